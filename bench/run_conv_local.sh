#!/bin/bash
# Runs the ConvLocal suite (bench/conv_local_bench) and its libtorch twin and prints one
# comparison table.
#   bench/run_conv_local.sh [build_dir=build] [steps=60] [extra conv_local_bench args, e.g. --general]
# Naming the larger layers (seq_1ch, face_L4, face_L5) runs them on both sides instead of the suite.
# Each libtorch thread split runs in a fresh process (no order effects); the table
# compares xgrad at T threads with libtorch's best variant and split using at most T
# cores. No malloc tuning of any kind: what a user runs.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
steps=${2:-60}
shift $(( $# > 2 ? 2 : $# ))
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) threads available"
[[ -x "$build/bench/core_to_core" ]] && "$build/bench/core_to_core"  # the VM's CPU placement (see the file)
"$build/bench/conv_local_bench" "$@" | tee "$out/xgrad.txt"
twin="$build/bench/conv_local_torch_twin"
twin_cases=""
for arg in "$@"; do
  case "$arg" in seq_1ch | face_L4 | face_L5) twin_cases=extra ;; esac
done
if [[ -x "$twin" ]]; then
  for split in "1 1" "2 1" "1 2" "2 2"; do
    "$twin" "$steps" $split $twin_cases >> "$out/torch.txt"
  done
else
  echo "(no libtorch twin: configure with -Dtorch_twin=enabled and libtorch-dev installed)"
  touch "$out/torch.txt"
fi
[[ -x "$build/bench/core_to_core" ]] && "$build/bench/core_to_core"
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
bvalid = {r["threads"]: float(r["gflops"]) for r in xg if r["workload"] == "B_VALID" and r["path"] == "layer"}
print(f"{'workload':<12}{'path':>8}{'T':>3}{'xgrad ms':>10}{'GFLOP/s':>9}{'vs B_VALID':>11}{'roofline':>9}"
      f"{'libtorch ms':>13}{'speed-up':>9}   libtorch best (variant, torch/openblas threads)")
for r in xg:
    t = int(r["threads"])
    x = float(r["median_ms"])
    gf = float(r["gflops"])
    rel = f"{100 * gf / bvalid[r['threads']]:.0f}%" if r["threads"] in bvalid else "-"
    roof = f"{100 * float(r['roofline_ms']) / x:.0f}%"
    cands = [c for c in tt if c["workload"] == r["workload"]
             and max(int(c["torch_threads"]), int(c["blas_threads"])) <= t]
    if cands:
        best = min(cands, key=lambda c: float(c["median_ms"]))
        m = float(best["median_ms"])
        print(f"{r['workload']:<12}{r['path']:>8}{t:>3}{x:>10.3f}{gf:>9.1f}{rel:>11}{roof:>9}{m:>13.3f}{m / x:>8.1f}x   "
              f"{best['variant']}, {best['torch_threads']}/{best['blas_threads']}")
    else:
        print(f"{r['workload']:<12}{r['path']:>8}{t:>3}{x:>10.3f}{gf:>9.1f}{rel:>11}{roof:>9}{'-':>13}{'-':>9}")
PY
