#!/bin/bash
# Runs the ConvLocal bench and its libtorch twin and prints one comparison table.
#   bench/run_conv_local.sh [build_dir=build] [steps=100]
# Each libtorch thread split runs in a fresh process (no order effects) with glibc's
# mmap/trim thresholds raised, so large tensors are not re-faulted every step; the
# table compares xgrad at T threads with libtorch's best variant and split using at most T cores.
# xgrad rows: raw = the fast kernels called directly, layer = nn::ConvLocal forward + backward
# through the tape (what a user runs), general = that layer with the fast kernels switched off.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
steps=${2:-100}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

env MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000 "$build/bench/conv_local_bench" |
  tee "$out/xgrad.txt"
twin="$build/bench/conv_local_torch_twin"
if [[ -x "$twin" ]]; then
  for split in "1 1" "2 1" "1 2" "2 2"; do
    env MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000 "$twin" "$steps" $split >> "$out/torch.txt"
  done
else
  echo "(no libtorch twin: configure with -Dtorch_twin=enabled and libtorch-dev installed)"
  touch "$out/torch.txt"
fi
echo
python3 - "$out/xgrad.txt" "$out/torch.txt" <<'PY'
import sys
def results(path):
    rows = []
    for line in open(path):
        if line.startswith("RESULT "):
            rows.append(dict(kv.split("=", 1) for kv in line.split()[1:]))
    return rows
xg, tt = results(sys.argv[1]), results(sys.argv[2])
print(f"{'workload':<9}{'path':>8}{'threads':>8}{'xgrad ms':>11}{'libtorch ms':>13}{'ratio':>8}   libtorch best (variant, torch/openblas threads)")
for r in xg:
    t = int(r["threads"])
    cands = [c for c in tt if c["workload"] == r["workload"]
             and max(int(c["torch_threads"]), int(c["blas_threads"])) <= t]
    x = float(r["median_ms"])
    if cands:
        best = min(cands, key=lambda c: float(c["median_ms"]))
        m = float(best["median_ms"])
        print(f"{r['workload']:<9}{r['path']:>8}{t:>8}{x:>11.3f}{m:>13.3f}{m / x:>7.1f}x   "
              f"{best['variant']}, {best['torch_threads']}/{best['blas_threads']}")
    else:
        print(f"{r['workload']:<9}{r['path']:>8}{t:>8}{x:>11.3f}{'-':>13}{'-':>8}")
PY
