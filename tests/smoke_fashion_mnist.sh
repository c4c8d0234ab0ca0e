#!/usr/bin/env bash
# Smoke test of the main job: 1 epoch on the first 2,000 training images.
# Checks that the loss falls, the run directory is complete, and that the same seed
# and thread count give identical metrics (time column aside).
# Usage: smoke_fashion_mnist.sh <fashion_mnist binary> [extra flags, e.g. --model vit]
set -euo pipefail
binary=$1
shift
if [[ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]]; then
  echo "skipped: dataset-fashion-mnist is not installed"; exit 77
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for run in a b; do
  "$binary" --epochs 1 --limit 2000 --threads 2 --seed 3 --out "$out/$run" "$@" > "$out/$run.log"
done
tail -n 1 "$out/a.log" | grep -Eq '^test accuracy: [0-9]+\.[0-9]{2}%$' || { echo "last line is not the accuracy"; exit 1; }
for f in metrics.csv checkpoint.npz; do [[ -s "$out/a/$f" ]] || { echo "missing $f"; exit 1; }; done
# The first progress line has the loss after one batch; the epoch's mean loss must be lower,
# and well below ln(10) = 2.30 (chance), and the test accuracy well above chance.
first=$(grep -m1 -oE 'loss [0-9.]+' "$out/a.log" | cut -d' ' -f2)
mean=$(sed -n 2p "$out/a/metrics.csv" | cut -d, -f2)
accuracy=$(sed -n 2p "$out/a/metrics.csv" | cut -d, -f5)
echo "first-batch loss $first, epoch mean loss $mean, test accuracy $accuracy"
awk -v f="$first" -v m="$mean" -v a="$accuracy" 'BEGIN { exit !(m < f && m < 2.0 && a > 0.5) }' \
  || { echo "loss did not decrease enough"; exit 1; }
diff <(cut -d, -f1-5 "$out/a/metrics.csv") <(cut -d, -f1-5 "$out/b/metrics.csv") \
  || { echo "two runs with the same seed and threads differ"; exit 1; }
echo "1 passed, 0 failed"
