#!/usr/bin/env bash
# Match a grid of label rules against the probe-measured freeze frontier of 12 corpus runs (6 families,
# constant and cosine rates; 3 seeds, 0.2 points). The probes are cached in
# predictor_data/frontier_corpus_cache.json, so with the corpus collected (smartfrz collect --preset corpus)
# this takes seconds; without the cache it re-runs ~650 probes (about 1.5 h of one CPU thread).
# Writes predictor_data/frontier_rule_grid.{json,md}.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=(
  digits_mixer-adamw-lr0.001-s100 digits_plaincnn-adam-lr0.0005-s100 digits_resnet-sgd-lr0.02-s100
  digits_vgg-sgd-lr0.01-s100 mnist1d_conv1d-sgd-lr0.01-s100 digits_mixer-adamw-lr0.002-cosine-s100
  digits_plaincnn-adam-lr0.001-cosine-s100 digits_resnet-sgd-lr0.05-cosine-s100 digits_vgg-sgd-lr0.02-cosine-s100
  mnist1d_conv1d-sgd-lr0.03-cosine-s100 fmnist_lenet-adam-lr0.0005-s100 fmnist_lenet-adam-lr0.001-cosine-s100
)
RULES=()
for base in monotone:0.999 monotone:0.999:0.25 monotone:0.998:0.25 monotone:0.995:0.25 monotone:0.995 monotone:0.99 \
            horizon@0.5:0.998 horizon@0.5:0.995 horizon:0.995 stable:0.995 \
            floor:0.5 floor:0.5:0.25 floor:0.25:0.25 floor@0.1:0.5:0.25 floor@0.1:0.25:0.25; do
  RULES+=("$base")
  for gate in 0.5 0.75 1 1.5 2; do RULES+=("$base,acc=$gate"); done
done
for gate in 0.75 1 1.5; do RULES+=("monotone:1e-06,acc=$gate"); done  # the accuracy gate alone (any CKA passes)
exec "${PYTHON:-.venv/bin/python}" -m smartfrz.cli probes frontier --traces "${TRACES:-traces/corpus/runs}" \
  --runs "${RUNS[@]}" --seeds 3 --tol 0.2 --cache predictor_data/frontier_corpus_cache.json \
  --rules "${RULES[@]}" --out predictor_data/frontier_rule_grid.json
