# Two commands for a fresh machine: `make lab` and `make test`. Each creates .venv on first use
# (a few minutes: PyTorch is large) and is quick once it exists.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.course-installed
# Tests never touch the network or your own Hugging Face cache.
# One thread: the tiny smoke models gain nothing from more, and lose a lot when the cores are shared.
# PYTHONDONTWRITEBYTECODE emptied: some images set it, and then each test process rewrites and compiles every test
# module again (pytest keeps them in __pycache__ otherwise), about 3 s per process.
TEST_ENV := COURSE_MODE=smoke HF_HUB_OFFLINE=1 HF_HOME=$(CURDIR)/build/test-hf-home MPLBACKEND=Agg PYTHONHASHSEED=0 OMP_NUM_THREADS=1 \
	PYTHONDONTWRITEBYTECODE=
# Root (AutoDL, containers) must opt in to run JupyterLab.
# No "get Jupyter news?" pop-up and no update check: the course pins its JupyterLab.
LAB_ARGS := --notebook-dir=notebooks --LabApp.news_url=None \
	--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate $(if $(filter 0,$(shell id -u)),--allow-root)
NBVAL    := --nbval-lax --nbval-current-env --nbval-cell-timeout=600 --nbval-kernel-startup-timeout=120
# Tests run in JOBS processes (pytest-xdist), each test file on one of them: a lesson's cells run in order in one
# kernel. `make test JOBS=8` on a larger machine; JOBS=0 runs everything in this process.
JOBS     ?= 2
PYTEST   := $(BIN)/python -m pytest -n $(JOBS) --dist loadfile --no-loadscope-reorder --durations=15

.PHONY: setup lab lint format test test-fast test-unit test-notebooks lessons rehearse bench models olah clean

# olah, the hub mirror the download tests run against, in its own environment: its dependencies pin
# psutil<6, which the course's ipython cannot use.
OLAH_VENV  := build/olah-venv
OLAH_STAMP := $(OLAH_VENV)/.installed
$(OLAH_STAMP): requirements-mirror.txt
	@test -x $(OLAH_VENV)/bin/python || $(PYTHON) -m venv $(OLAH_VENV)
	$(OLAH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-r requirements-mirror.txt
	@touch $(OLAH_STAMP)

olah: $(OLAH_STAMP)

$(STAMP): pyproject.toml requirements-lock.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-lock.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3" > /dev/null
	@mkdir -p $(VENV)/share/jupyter/lab/settings
	@echo '{"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}}' \
		> $(VENV)/share/jupyter/lab/settings/overrides.json
	@touch $(STAMP)

setup: $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab $(LAB_ARGS)

# Style: ruff's rules in pyproject.toml (120 columns; 100 in lesson cells, notebooks/ruff.toml). `make format` fixes most.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The English lessons. Their Chinese twins have the same code (tests/test_translations.py); tests/test_rehearsal.py
# executes the twin of 04, and `make lessons` runs them all.
LESSON_FILES := $(sort $(wildcard notebooks/*.ipynb))
test: lint $(OLAH_STAMP)
	$(TEST_ENV) $(PYTEST) tests $(LESSON_FILES) $(NBVAL)

# The inner loop: the tests in tests/ (or TESTS=tests/test_x.py) without those marked slow (pyproject.toml), and no
# lesson executed.
TESTS    ?= tests
test-fast: $(STAMP) $(OLAH_STAMP)
	$(TEST_ENV) $(PYTEST) $(TESTS) -m "not slow"

test-unit: $(STAMP) $(OLAH_STAMP)
	$(TEST_ENV) $(PYTEST) tests

test-notebooks: $(STAMP)
	$(TEST_ENV) $(PYTEST) $(LESSON_FILES) $(NBVAL)

# Executes every lesson and every Chinese twin headless (mode as COURSE_MODE says, default by hardware) into
# build/lessons/ and build/lessons/zh/, with outputs.
lessons: $(STAMP)
	@mkdir -p build/lessons/zh
	cd notebooks && ../$(BIN)/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=3600 \
		--output-dir ../build/lessons *.ipynb
	cd notebooks/zh && ../../$(BIN)/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=3600 \
		--output-dir ../../build/lessons/zh *.ipynb

# Full mode rehearsed on any machine: full mode's models, sizes and dtype, with every loop cut to 2 steps
# (COURSE_REHEARSAL=1). Without the hub the models are full-size stand-ins with random weights, so the pictures are
# noise: what it shows is that every cell of full mode runs. Prints each lesson's time, peak memory and figure count;
# the executed lessons go to build/rehearsal/. About 55 minutes on 2 CPU cores (lesson 10 alone: 9 minutes and 16 GiB
# of memory); LESSONS="03 08" picks some.
LESSONS ?= 00 01 02 03 04 05 06 07 08 09 10
rehearse: $(STAMP)
	COURSE_MODE=full COURSE_REHEARSAL=1 HF_HUB_OFFLINE=1 HF_HOME=$(CURDIR)/build/rehearse-hf-home PYTHONHASHSEED=0 \
		$(BIN)/python scripts/run_notebooks.py --out build/rehearsal --timeout 1800 \
		$(foreach n,$(LESSONS),$(wildcard notebooks/$(n)_*.ipynb))

bench: $(STAMP)
	$(BIN)/python bench/sampling.py
	$(BIN)/python bench/training.py
	$(BIN)/python bench/emoji_quality.py
	$(BIN)/python bench/pixel_dtype.py
	$(BIN)/python bench/big_models.py

# Rebuilds the course's trained models in data/models/ from data/emoji, as shipped (about 6 hours of one shared CPU core;
# each model card says how long each part took). Every phase saves checkpoints under build/ and, run again after an
# interruption, continues where it stopped. The UNet and decoder phases only need the vae phase: on two cores, run
# them side by side.
TRAIN_ENV := OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 COURSE_MODE=smoke
DDPM_ARGS := --preset smoke --dataset emoji-faces --image_size 32 --block_out_channels 32 64 64 --norm_num_groups 8 \
	--train_batch_size 16 --max_steps 2400 --learning_rate 2e-3 --lr_warmup_steps 100 --ema_max_decay 0.999 \
	--eval_batch_size 16 --num_inference_steps 50 --save_image_steps 800 --checkpointing_steps 200 \
	--logging_steps 50 --logger none --output_dir build/emoji-ddpm-train
models: $(STAMP)
	$(TRAIN_ENV) $(BIN)/python scripts/train_emoji_models.py vae --steps 900
	$(TRAIN_ENV) $(BIN)/python scripts/train_emoji_models.py unet --steps 5400
	$(TRAIN_ENV) $(BIN)/python scripts/train_emoji_models.py decoder --steps 2500
	$(TRAIN_ENV) $(BIN)/python scripts/train_emoji_models.py export
	$(TRAIN_ENV) $(BIN)/python scripts/train_emoji_models.py sd3 --steps 10000
	$(TRAIN_ENV) $(BIN)/python scripts/train_emoji_models.py export-sd3
	$(TRAIN_ENV) $(BIN)/python scripts/train_ddpm.py $(DDPM_ARGS) $(if $(wildcard build/emoji-ddpm-train/checkpoints),--resume latest)
	$(TRAIN_ENV) $(BIN)/python scripts/train_emoji_models.py export-ddpm

clean:
	rm -rf build
