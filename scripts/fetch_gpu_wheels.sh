#!/usr/bin/env bash
# Download the wheels in scripts/gpu-wheels.txt into .whl/ (git-ignored) for a GPU machine without internet,
# where scripts/gpu_check.sh installs them. Run it where PyPI (or a mirror) is reachable. The target Python
# defaults to 3.12 on x86_64 Linux; set PY=3.11 (say) to match another machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-3.12}
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_26_x86_64 manylinux_2_24_x86_64 \
         manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download --no-deps --only-binary=:all: --python-version "$PY" --implementation cp "${platforms[@]}" \
  -d .whl -r scripts/gpu-wheels.txt
echo "$(ls .whl/*.whl | wc -l) wheels, $(du -sh .whl | cut -f1), in .whl/"
