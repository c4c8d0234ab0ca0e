#!/bin/bash
# The side-by-side suite: builds the xgrad benchmarks and their libtorch twins in their
# own build dir, runs every workload at 1 and 2 threads and prints one table.
#   bench/run_all.sh [build_dir=build-bench]
# Every process runs as a user runs it: no malloc tuning (xgrad's caching allocator
# keeps its memory between steps; libtorch gets glibc's defaults, as its users do).
# Where this machine sets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (users' machines do
# not), the whole suite runs twice: as set, then with both unset. Each libtorch thread split (torch intra-op / OpenBLAS threads) runs in a fresh
# process; at T threads libtorch is credited with its best split using at most T cores.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-bench}
if [[ ! -d "$build" ]]; then
  meson setup "$build" -Dtorch_twin=enabled -Dtests=false
fi
ninja -C "$build" -j2 bench/core_to_core bench/models_bench bench/conv_local_bench bench/attention_bench bench/models_torch_twin \
  bench/conv_local_torch_twin bench/attention_torch_twin
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

suite() {  # suite <label>: runs every workload, then prints the table
  rm -f "$out/xgrad.txt" "$out/torch.txt"
  echo "== $1"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) ($(nproc) cores)"
  echo "load before: $(uptime)"
  "$build/bench/core_to_core"  # the VM's CPU placement (see bench/core_to_core.cpp)
  for threads in 1 2; do
    "$build/bench/models_bench" "$threads" | tee -a "$out/xgrad.txt"
    "$build/bench/attention_bench" "$threads" | tee -a "$out/xgrad.txt"
  done
  "$build/bench/conv_local_bench" | tee -a "$out/xgrad.txt"
  for split in "1 1" "2 1" "1 2" "2 2"; do
    "$build/bench/models_torch_twin" $split | tee -a "$out/torch.txt"
    "$build/bench/conv_local_torch_twin" 50 $split | tee -a "$out/torch.txt"
    "$build/bench/attention_torch_twin" $split | tee -a "$out/torch.txt"
  done
  echo "load after: $(uptime)"
  "$build/bench/core_to_core"
  echo
  table
}

table() {
python3 - "$out/xgrad.txt" "$out/torch.txt" <<'PY'
import sys
def results(path):
    rows = []
    for line in open(path):
        if not line.startswith("RESULT "):
            continue
        r = dict(kv.split("=", 1) for kv in line.split()[1:])
        if "median_ms" in r:  # conv_local_bench / its twin: workloads A and B, in ms
            # xgrad's raw-kernel and general-path rows get a suffix; the layer row is convlocal_A/B
            path = r.get("path", "layer")
            suffix = "" if path == "layer" else "_" + path
            r = {**r, "workload": "convlocal_" + r["workload"], "median": r["median_ms"], "unit": "ms",
                 "row": "convlocal_" + r["workload"] + suffix}
        rows.append(r)
    return rows
xg, tt = results(sys.argv[1]), results(sys.argv[2])
print(f"{'workload':<19}{'unit':>6}{'threads':>8}{'xgrad':>11}{'libtorch':>11}{'ratio':>8}   libtorch best split (torch/openblas threads)")
print(f"{'':<33}{'median':>11}{'median':>11}   (ratio = libtorch / xgrad: > 1 means xgrad is faster)")
for r in xg:
    t = int(r["threads"])
    cands = [c for c in tt if c["workload"] == r["workload"]
             and max(int(c["torch_threads"]), int(c["blas_threads"])) <= t]
    x = float(r["median"])
    if cands:
        best = min(cands, key=lambda c: float(c["median"]))
        m = float(best["median"])
        variant = f"{best['variant']}, " if "variant" in best else ""
        print(f"{r.get('row', r['workload']):<19}{r['unit']:>6}{t:>8}{x:>11.4f}{m:>11.4f}{m / x:>7.2f}x   "
              f"{variant}{best['torch_threads']}/{best['blas_threads']}")
    else:
        print(f"{r.get('row', r['workload']):<19}{r['unit']:>6}{t:>8}{x:>11.4f}{'-':>11}{'-':>8}")
PY
}

if [[ -n "${OPENBLAS_CORETYPE:-}${OPENBLAS_L2_SIZE:-}" ]]; then
  suite "as this machine sets it: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-}"
  (unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE; suite "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (as on users' machines)")
else
  suite "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (as on users' machines)"
fi
