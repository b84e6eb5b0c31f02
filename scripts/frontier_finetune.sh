#!/usr/bin/env bash
# The freeze frontier of ten zoo fine-tuning runs (five families: LeNet, plain CNN, ResNet, VGG, ViT pretrained on
# Fashion-MNIST and fine-tuned on digits; constant and cosine rates; 3 seeds, 0.2 points), and the label rules
# matched against it. The probes are cached in predictor_data/frontier_finetune_cache.json, so with the corpus
# collected (smartfrz collect --preset corpus) this takes seconds; without the cache it re-runs 498 probes (about
# 66 min of one CPU thread). Writes predictor_data/frontier_finetune.{json,md}.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=()
for task in vgg:sgd-lr0.005 vgg:sgd-lr0.01-cosine resnet:sgd-lr0.005 resnet:sgd-lr0.01-cosine lenet:adam-lr0.00025 \
            lenet:adam-lr0.0005-cosine vit:adamw-lr0.0005 vit:adamw-lr0.001-cosine plaincnn:sgd-lr0.005 \
            plaincnn:sgd-lr0.01-cosine; do
  RUNS+=("digits28_${task%%:*}_ft-${task#*:}-s100")
done
exec "${PYTHON:-.venv/bin/python}" -m smartfrz.cli probes frontier --traces "${TRACES:-traces/corpus/runs}" \
  --runs "${RUNS[@]}" --seeds 3 --tol 0.2 --cache predictor_data/frontier_finetune_cache.json \
  --rules monotone:0.999:0.25 monotone:0.999:0.25,norm=0.05 monotone:0.998:0.25,acc=1 monotone:0.9995:0.25 \
          monotone:0.999 monotone:0.99 monotone:0.95 \
  --out predictor_data/frontier_finetune.json
