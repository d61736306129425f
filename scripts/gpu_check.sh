#!/usr/bin/env bash
# GPU check on a machine without internet: install what is missing from wheels in ./.whl (fetched beforehand on a
# machine with PyPI access, see below), run both benchmarks at full size and the lessons in full mode, and write a
# report to ${OUT:-build/gpu-check}/report.md. Budget: about 8 minutes on an H100/H200-class GPU.
#
# Prepare the wheels where PyPI is reachable (Python 3.12 / x86_64 shown; match the GPU machine):
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 -d .whl \
#       -r requirements-lock.txt --no-deps
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build/gpu-check}
mkdir -p "$OUT"
REPORT="$OUT/report.md"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 COURSE_MODE=full

if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/course-site .whl/*.whl && export PYTHONPATH="/tmp/course-site:$PWD"
else
  export PYTHONPATH="$PWD"
fi

{
  echo "# GPU check $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/GPU: /'
  python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, '| diffusers', diffusers.__version__, '| transformers', transformers.__version__)"
} > "$REPORT"

run() {  # run NAME SECONDS COMMAND...: append the command's output (or its failure) to the report
  local name=$1 limit=$2; shift 2
  echo -e "\n## $name\n\`\`\`" >> "$REPORT"
  timeout "$limit" "$@" 2>&1 | grep -v -E "it/s\]|s/it\]" | tail -40 >> "$REPORT"
  echo -e "exit status ${PIPESTATUS[0]}\n\`\`\`" >> "$REPORT"
}

run "sampling benchmark (SD 1.5 architecture, 512 px, 50 steps)" 240 python3 bench/sampling.py --size full --repeats 3
run "training benchmark (the seed's 128 px UNet)" 150 python3 bench/training.py --size full
for nb in notebooks/0[0-6]_*.ipynb; do
  run "lesson $(basename "$nb") in full mode (stand-ins at full size: no hub here)" 120 \
    python3 -m jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=110 --output-dir "$OUT" "$nb"
done
echo "report: $REPORT"
