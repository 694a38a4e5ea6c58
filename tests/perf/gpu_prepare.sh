#!/usr/bin/env bash
# Here, before a GPU spell: what travels with the working tree for tests/perf/gpu_zoo.sh (both folders are
# git-ignored through .git/info/exclude): the JPEG copy packed to 21 MB, and wheels of the packages the GPU
# image lacks (its python3 is 3.12). Then, with the device tool:
#   run(command="OUT=$OUT bash tests/perf/gpu_zoo.sh", carry=[".gpudata", ".whl"], timeout_s=600)
set -euo pipefail
grep -qx "/.gpudata/" .git/info/exclude 2>/dev/null || echo "/.gpudata/" >> .git/info/exclude
grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
mkdir -p .gpudata .whl
cp ../shared/datasets/devicepack.py .gpudata/
[ -f .gpudata/cifar10-jpeg.npz ] || python ../shared/datasets/devicepack.py pack .gpudata/cifar10-jpeg.npz
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  jsonschema jsonschema-specifications referencing rpds-py tomli-w
du -sh .gpudata .whl
