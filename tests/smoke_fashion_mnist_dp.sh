#!/usr/bin/env bash
# Smoke test of fashion_mnist --dp-sgd: 1 epoch of the CNN on the first 2,000 training
# images with per-example clipping and noise. Checks that the loss falls, the accuracy
# is above chance, and that the same seed gives identical metrics (the noise is drawn
# from the seed).
# Usage: smoke_fashion_mnist_dp.sh <fashion_mnist binary>
set -euo pipefail
binary=$1
if [[ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]]; then
  echo "skipped: dataset-fashion-mnist is not installed"; exit 77
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for run in a b; do
  "$binary" --model cnn --epochs 1 --limit 2000 --test-limit 1000 --threads 2 --seed 3 --lr 5e-3 \
    --dp-sgd --l2-norm-clip 1.0 --noise-multiplier 1.1 --out "$out/$run" > "$out/$run.log"
done
grep -q '^DP-SGD: per-example gradients clipped to L2 norm 1, noise multiplier 1.1$' "$out/a.log" \
  || { echo "the run does not say it is DP-SGD"; exit 1; }
first=$(grep -m1 -oE 'loss [0-9.]+' "$out/a.log" | cut -d' ' -f2)
mean=$(sed -n 2p "$out/a/metrics.csv" | cut -d, -f2)
accuracy=$(sed -n 2p "$out/a/metrics.csv" | cut -d, -f5)
echo "first-batch loss $first, epoch mean loss $mean, test accuracy $accuracy"
awk -v f="$first" -v m="$mean" -v a="$accuracy" 'BEGIN { exit !(m < f && a > 0.3) }' \
  || { echo "DP-SGD did not learn"; exit 1; }
diff <(cut -d, -f1-5 "$out/a/metrics.csv") <(cut -d, -f1-5 "$out/b/metrics.csv") \
  || { echo "two runs with the same seed differ"; exit 1; }
echo "1 passed, 0 failed"
