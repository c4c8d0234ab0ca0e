#!/usr/bin/env bash
# Kill a training run with SIGKILL in the middle of its second epoch, resume it
# from the checkpoint it left, and check that it ends where an uninterrupted run
# ends: the same checkpoint, byte for byte, and a metrics.csv with every epoch
# (the seconds column aside, which must merely be filled). At 1 and at 2 threads.
# Usage: resume_fashion_mnist.sh <fashion_mnist binary>
set -euo pipefail
binary=$1
if [[ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]]; then
  echo "skipped: dataset-fashion-mnist is not installed"; exit 77
fi
out=$(mktemp -d)
pid=
cleanup() {
  if [[ -n $pid ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$out"
}
trap cleanup EXIT
# 3 epochs of 20 batches on 640 images, evaluated on 500 test images.
run=(--epochs 3 --limit 640 --test-limit 500 --batch-size 32 --seed 7)

for threads in 1 2; do
  dir=$out/threads$threads
  mkdir -p "$dir"
  "$binary" "${run[@]}" --threads "$threads" --out "$dir/whole" > "$dir/whole.log"

  "$binary" "${run[@]}" --threads "$threads" --out "$dir/cut" > "$dir/cut.log" &
  pid=$!
  # Non-terminal progress lines ("epoch 2/3  10% 2/20 ...") start once epoch 1's
  # checkpoint is written: kill at the first one, a batch or two into epoch 2.
  for ((i = 0; i < 6000; ++i)); do
    grep -Eqs '^epoch 2/3 +[0-9]+%' "$dir/cut.log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  kill -KILL "$pid" 2>/dev/null || true
  status=0
  wait "$pid" || status=$?
  pid=
  [[ $status -eq 137 ]] || { echo "threads $threads: the run was not killed mid-run (exit status $status)"; cat "$dir/cut.log"; exit 1; }
  if grep -q '^epoch 2/3:' "$dir/cut.log"; then
    echo "threads $threads: the kill came after epoch 2 had finished; not a mid-epoch kill"; exit 1
  fi

  "$binary" "${run[@]}" --threads "$threads" --out "$dir/cut" --resume "$dir/cut/checkpoint.npz" > "$dir/resume.log"
  grep -q "^resumed from .* after epoch 1$" "$dir/resume.log" \
    || { echo "threads $threads: did not resume after epoch 1"; cat "$dir/resume.log"; exit 1; }
  cmp "$dir/whole/checkpoint.npz" "$dir/cut/checkpoint.npz" \
    || { echo "threads $threads: the resumed run's checkpoint differs from the uninterrupted run's"; exit 1; }
  diff <(cut -d, -f1-5 "$dir/whole/metrics.csv") <(cut -d, -f1-5 "$dir/cut/metrics.csv") \
    || { echo "threads $threads: metrics.csv of the resumed run differs from the uninterrupted run's"; exit 1; }
  [[ $(cut -d, -f1 "$dir/cut/metrics.csv" | tr '\n' ' ') == "epoch 1 2 3 " ]] \
    || { echo "threads $threads: metrics.csv does not hold epochs 1, 2, 3"; cat "$dir/cut/metrics.csv"; exit 1; }
  awk -F, 'NR > 1 && $6 !~ /^[0-9]+\.[0-9][0-9]$/ { exit 1 }' "$dir/cut/metrics.csv" \
    || { echo "threads $threads: metrics.csv lacks the seconds of some epoch"; cat "$dir/cut/metrics.csv"; exit 1; }
  echo "threads $threads: killed in epoch 2, resumed; checkpoint and metrics equal to the uninterrupted run's"
done
echo "2 passed, 0 failed"
