#!/usr/bin/env bash
# GPU check for a machine without internet (tier 3 of the tests): install what is missing from the wheels in .whl/,
# then, within a total budget (default 480 s), run both benchmarks at full size, the trainer script on the full
# preset, the GPU-only tests and the lessons in full mode; write everything to ${OUT:-build/gpu-check}/report.md.
# Each part gets the smaller of its own limit and the time left; a part that no longer fits is reported as skipped.
#
#   bash scripts/fetch_gpu_wheels.sh          # first, where PyPI is reachable: diffusers, datasets, nbclient, torchao...
#   bash scripts/gpu_check.sh                 # then on the GPU machine
#   CHECK_SIZE=tiny BUDGET=300 bash scripts/gpu_check.sh   # the same steps on a CPU, tiny and smoke: checks this script
#
# Lesson 05 trains for hours in full mode, so the check runs its trainer script for 60 steps of the full preset
# instead. The notebooks run in full mode on full-size stand-ins (random weights: there is no hub), so their
# pictures are noise; what the check shows is that every cell runs on the GPU at full size, and how long it takes.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-build/gpu-check}
BUDGET=${BUDGET:-480}
SIZE=${CHECK_SIZE:-full}
mkdir -p "$OUT"
REPORT="$OUT/report.md"
START=$SECONDS
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 MPLBACKEND=Agg TQDM_MININTERVAL=5
if [ "$SIZE" = full ]; then export COURSE_MODE=full; else export COURSE_MODE=smoke; fi
export HF_HOME=${HF_HOME:-$WORK/hf-home}

if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl \
    || echo "wheel install failed" >&2
  export PYTHONPATH="$WORK/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi

{
  echo "# GPU check $(date -u +%Y-%m-%dT%H:%MZ), size $SIZE, budget $BUDGET s"
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/GPU: /'
  else
    echo "GPU: none found (no nvidia-smi)"
  fi
  python3 -c "import sys, torch, diffusers, transformers, accelerate, datasets; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.cuda.is_available(), '| diffusers', diffusers.__version__, '| transformers', transformers.__version__, '| accelerate', accelerate.__version__, '| datasets', datasets.__version__)" 2>&1 | tail -1
} > "$REPORT"

left() { echo $(( BUDGET - (SECONDS - START) )); }

part() {  # part NAME LIMIT COMMAND...: run with the smaller of LIMIT and the time left; append its output to the report
  local name=$1 limit=$2 t0=$SECONDS; shift 2
  local budget_left; budget_left=$(( $(left) - 5 ))
  (( budget_left < limit )) && limit=$budget_left
  if (( limit < 20 )); then
    echo -e "\n## $name\nskipped: $(( limit + 5 )) s of the budget left" >> "$REPORT"
    return
  fi
  echo -e "\n## $name\n\`\`\`" >> "$REPORT"
  timeout -k 10 "$limit" "$@" > "$WORK/part.log" 2>&1
  local status=$? what
  grep -v -E "it/s\]|s/it\]|step/s|^\s*$|WARNING: Location|running over TCP without encryption" "$WORK/part.log" | tail -40 >> "$REPORT"
  echo '```' >> "$REPORT"
  if (( status == 124 || status == 137 )); then what="stopped at its limit of $limit s"; else what="exit status $status"; fi
  echo "$what, $(( SECONDS - t0 )) s" >> "$REPORT"
  echo "$name: $what, $(( SECONDS - t0 )) s" >&2
}

# The benchmarks first (they are what this check is for), then the rest in the time left.
part "sampling benchmark (SD 1.5 architecture)" 170 \
  python3 bench/sampling.py --size "$SIZE" --repeats 3 --compile-mode default
part "training benchmark (lesson 05's UNet)" 150 \
  python3 bench/training.py --size "$SIZE" --repeats 2
part "lesson 05's trainer script, $COURSE_MODE preset, 60 steps" 60 \
  python3 scripts/train_ddpm.py --preset "$COURSE_MODE" --max_steps 60 --num_inference_steps 20 --eval_batch_size 4 \
  --logger none --output_dir "$WORK/train-run"
part "lesson 10's measurements (bench/big_models.py: the CPU techniques on the emoji models)" 120 \
  python3 bench/big_models.py --repeats 2
part "GPU-only tests (torch.compile and channels_last in the trainer)" 60 \
  python3 -m pytest -q -p no:cacheprovider tests/test_training.py -k "gpu or compile or channels_last"
# The lessons in full mode, quickest first (05 trains for hours: its script ran above). BUDGET=1200 runs them all.
part "lessons in $COURSE_MODE mode" 900 \
  python3 scripts/run_notebooks.py --out "$OUT/executed" --timeout 300 \
  notebooks/00_setup.ipynb notebooks/01_denoising_loop.ipynb notebooks/06_attention_maps.ipynb \
  notebooks/04_datasets.ipynb notebooks/03_autopipeline.ipynb notebooks/02_stable_diffusion_deconstructed.ipynb \
  notebooks/08_lora_finetuning.ipynb notebooks/07_text_to_image_from_scratch.ipynb \
  notebooks/09_flow_matching_and_transformers.ipynb notebooks/10_big_models_small_gpus.ipynb
echo -e "\ntotal: $(( SECONDS - START )) s of the $BUDGET s budget" >> "$REPORT"
echo "report: $REPORT"
