#!/usr/bin/env bash
# The whole zoo at its reports' recipes on one GPU, in one prepared run.
#
# On the GPU machine (repo root; carry .gpudata and .whl, see tests/perf/gpu_prepare.sh):
#   OUT=$OUT BUDGET=480 bash tests/perf/gpu_zoo.sh
# Tested on the CPU first, end to end, as CI would run it:
#   OUT=/tmp/gz DEVICE=cpu PROFILE=smoke DATA=synthetic bash tests/perf/gpu_zoo.sh
#
# 1. packages the GPU image lacks (jsonschema and its needs, tomli-w) come from .whl/;
# 2. the JPEG copy is rebuilt from .gpudata/ (byte-identical zip, devicepack.py);
# 3. a CUDA check (every architecture: a few steps in the chosen precision and layout, loss falls, ONNX
#    export and parity), capped at CHECK_S seconds;
# 4. `cifarzoo bench --profile $PROFILE --device $DEVICE` in value order: report 000's five families x
#    norm/aug (seed 0), then every other entry (seed 0), then seeds 1 and 2 of all, sharing one time
#    budget: no run starts after it, a run past it pauses (resumable), what was not run is listed;
# 5. the plan with estimates, and everything tarred into $OUT/gpu-zoo.tar.gz (records, logs).
set -uo pipefail
PY=${PYTHON:-python3}  # the GPU image's python3 holds torch; here: PYTHON=.venv/bin/python
OUT=${OUT:-$(mktemp -d)}
DEVICE=${DEVICE:-cuda}
PROFILE=${PROFILE:-full}
BUDGET=${BUDGET:-480}
CHECK_S=${CHECK_S:-120}
FIRST=${FIRST:-"tinyvgg-norm tinyvgg-aug resnet12-norm resnet12-aug vit-norm vit-aug mixer-norm mixer-aug gru-norm gru-aug"}
REST=${REST:-"--all"}
SEEDS_LATER=${SEEDS_LATER:-"1,2"}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}" CIFARZOO_HOME="$OUT/home"
mkdir -p "$OUT/logs" "$OUT/results"
start=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - start) )); }

if [ -d .whl ] && ! "$PY" -c "import jsonschema, tomli_w" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
if [ -z "${DATA:-}" ]; then
  "$PY" .gpudata/devicepack.py unpack .gpudata/cifar10-jpeg.npz .gpudata/cifar10-jpeg.zip 2>&1 | tee "$OUT/logs/data.log"
  DATA=.gpudata/cifar10-jpeg.zip
fi
"$PY" -m cifarzoo doctor --json > "$OUT/logs/doctor.json" 2>&1
[ "$DEVICE" = cpu ] && CHECK_ARGS="--steps 3 --batch 8" || CHECK_ARGS=""
timeout "$CHECK_S" "$PY" tests/perf/cuda_check.py --device "$DEVICE" $CHECK_ARGS --json "$OUT/logs/cuda_check.json" \
  2>&1 | tee "$OUT/logs/cuda_check.log"
echo "cuda check: exit ${PIPESTATUS[0]}"

bench() {  # bench SEEDS ENTRY...: one phase of the budget
  local seeds=$1; shift
  local budget; budget=$(left)
  if [ "$budget" -lt 30 ]; then echo "budget spent: not started: $* (seeds $seeds)" | tee -a "$OUT/logs/not-run.log"; return; fi
  "$PY" -m cifarzoo bench "$@" --seeds "$seeds" --profile "$PROFILE" --device "$DEVICE" --data "$DATA" \
    --results "$OUT/results" --no-site --time-budget "$budget" --json --progress plain \
    > "$OUT/logs/bench-$seeds-$(date +%s).json" 2>> "$OUT/logs/bench.log"
  echo "bench seeds $seeds: exit $? ($(left) s of the budget left)" | tee -a "$OUT/logs/bench.log"
}
"$PY" -m cifarzoo bench --all --profile "$PROFILE" --device "$DEVICE" --data "$DATA" --results "$OUT/results" \
  --plan --json > "$OUT/logs/plan-$DEVICE.json" 2>> "$OUT/logs/bench.log"
bench 0 $FIRST
bench 0 $REST
bench "$SEEDS_LATER" $FIRST
bench "$SEEDS_LATER" $REST
tar czf "$OUT/gpu-zoo.tar.gz" -C "$OUT" results logs
echo "done in $(( $(date +%s) - start )) s: $(ls "$OUT"/results/*.json 2>/dev/null | wc -l) records in $OUT/gpu-zoo.tar.gz"
