#!/usr/bin/env bash
# On one GPU, in one prepared run: the flagship against the single-script loop, a CUDA check of every
# architecture, then as much of the zoo at its reports' recipes as the time budget holds.
#
# On the GPU machine (repo root; carry .gpudata and .whl, see tests/perf/gpu_prepare.sh):
#   OUT=$OUT bash tests/perf/gpu_zoo.sh
# Tested on the CPU first, end to end, as CI would run it:
#   OUT=/tmp/gz DEVICE=cpu PROFILE=smoke DATA=synthetic FLAGSHIP_ARGS="--epochs 1 --no-curve" \
#     FLAGSHIP_SEEDS=0 bash tests/perf/gpu_zoo.sh
#
# 1. packages the GPU image lacks (jsonschema and its needs, tomli-w) come from .whl/;
# 2. the JPEG copy is rebuilt from .gpudata/ (every file sha256-identical, devicepack.py);
# 3. the flagship against the single-script reference loop on the device (tests/perf/perf_flagship.py: airnet-fast
#    and airbench94's recipe, FLAGSHIP_SEEDS each, the per-epoch test curve), capped at FLAGSHIP_S seconds
#    (FLAGSHIP_S=0 skips it; its JSON is written after every seed, so a cut run keeps what it finished);
# 4. a CUDA check (every architecture: a few steps in the chosen precision and layout, loss falls, ONNX
#    export and parity), capped at CHECK_S seconds (0 skips it);
# 5. `cifarzoo bench --profile $PROFILE --device $DEVICE` in value order: FIRST (seeds FIRST_SEEDS), then
#    REST (seed 0), then seeds 1 and 2 of REST, sharing one time budget counted from the script's start:
#    no run starts after it, a run past it pauses (resumable), what was not run is listed;
# 6. the plan with estimates, and everything tarred into $OUT/gpu-zoo.tar.gz (records, logs, doctor --json).
# $OUT keeps six files beside the tarball (the device tool returns at most eight): the flagship's and the
# check's JSON and logs, bench.log and not-run.log, so a run cut at its time limit still returns those.
# A whole-zoo bench at `full` is ~12 GPU hours by the plan's estimate: a 10-minute lease holds the flagship,
# the check and a few entries, so FIRST defaults to the flagship's three seeds.
set -uo pipefail
PY=${PYTHON:-python3}  # the GPU image's python3 holds torch; here: PYTHON=.venv/bin/python
OUT=${OUT:-$(mktemp -d)}
WORK=${WORK:-$(mktemp -d)}  # records, the plan, per-phase JSON: tarred into $OUT at the end
DEVICE=${DEVICE:-cuda}
PROFILE=${PROFILE:-full}
BUDGET=${BUDGET:-520}
CHECK_S=${CHECK_S:-180}
FLAGSHIP_S=${FLAGSHIP_S:-200}
FLAGSHIP_SEEDS=${FLAGSHIP_SEEDS:-"0 1 2"}
FIRST=${FIRST:-"airnet-fast"}
FIRST_SEEDS=${FIRST_SEEDS:-"0"}
REST=${REST:-"--all"}
SEEDS_LATER=${SEEDS_LATER-"1,2"}  # empty: none
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}" CIFARZOO_HOME="$WORK/home"
LOGS=$OUT/logs
mkdir -p "$LOGS" "$WORK/results" "$WORK/logs"
start=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - start) )); }

if [ -d .whl ] && ! "$PY" -c "import jsonschema, tomli_w" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
if [ -z "${DATA:-}" ]; then
  "$PY" .gpudata/devicepack.py unpack .gpudata/cifar10-jpeg.npz .gpudata/cifar10-jpeg.zip 2>&1 | tee "$WORK/logs/data.log"
  DATA=.gpudata/cifar10-jpeg.zip
fi
"$PY" -m cifarzoo doctor --json > "$WORK/logs/doctor.json" 2>&1
if [ "$FLAGSHIP_S" -gt 0 ]; then
  # shellcheck disable=SC2086 (the seeds are words)
  timeout "$FLAGSHIP_S" "$PY" tests/perf/perf_flagship.py --device "$DEVICE" --data "$DATA" --seeds $FLAGSHIP_SEEDS \
    --reference-seeds $FLAGSHIP_SEEDS --json "$LOGS/flagship-$DEVICE.json" ${FLAGSHIP_ARGS:-} 2>&1 | tee "$LOGS/flagship.log"
  echo "flagship: exit ${PIPESTATUS[0]} ($(left) s of the budget left)"
fi
[ "$DEVICE" = cpu ] && CHECK_ARGS="--steps 3 --batch 8" || CHECK_ARGS=""
if [ "$CHECK_S" -gt 0 ]; then
  # shellcheck disable=SC2086
  timeout "$CHECK_S" "$PY" tests/perf/cuda_check.py --device "$DEVICE" $CHECK_ARGS --json "$LOGS/cuda_check.json" \
    2>&1 | tee "$LOGS/cuda_check.log"
  echo "cuda check: exit ${PIPESTATUS[0]} ($(left) s of the budget left)"
fi

bench() {  # bench SEEDS ENTRY...: one phase of the budget
  local seeds=$1; shift
  local budget; budget=$(left)
  if [ -z "$seeds" ]; then return; fi
  if [ "$budget" -lt 30 ]; then echo "budget spent: not started: $* (seeds $seeds)" | tee -a "$LOGS/not-run.log"; return; fi
  "$PY" -m cifarzoo bench "$@" --seeds "$seeds" --profile "$PROFILE" --device "$DEVICE" --data "$DATA" \
    --results "$WORK/results" --no-site --time-budget "$budget" --json --progress plain \
    > "$WORK/logs/bench-${seeds//,/_}-$(date +%s).json" 2>> "$LOGS/bench.log"
  echo "bench seeds $seeds: exit $? ($(left) s of the budget left)" | tee -a "$LOGS/bench.log"
}
"$PY" -m cifarzoo bench --all --profile "$PROFILE" --device "$DEVICE" --data "$DATA" --results "$WORK/results" \
  --plan --json > "$WORK/logs/plan-$DEVICE.json" 2>> "$LOGS/bench.log"
# shellcheck disable=SC2086
bench "$FIRST_SEEDS" $FIRST
# shellcheck disable=SC2086
bench 0 $REST
# shellcheck disable=SC2086
bench "$SEEDS_LATER" $REST
cp "$LOGS"/* "$WORK/logs/" 2>/dev/null
tar czf "$OUT/gpu-zoo.tar.gz" -C "$WORK" results logs
echo "done in $(( $(date +%s) - start )) s: $(ls "$WORK"/results/*.json 2>/dev/null | wc -l) records in $OUT/gpu-zoo.tar.gz"
