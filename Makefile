# Two commands for a fresh machine: `make lab` and `make test`. Each creates .venv on first use
# (a few minutes: PyTorch is large) and is quick once it exists.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.course-installed
# Tests never touch the network or your own Hugging Face cache.
# One thread: the tiny smoke models gain nothing from more, and lose a lot when the cores are shared.
TEST_ENV := COURSE_MODE=smoke HF_HUB_OFFLINE=1 HF_HOME=$(CURDIR)/build/test-hf-home MPLBACKEND=Agg PYTHONHASHSEED=0 OMP_NUM_THREADS=1
# Root (AutoDL, containers) must opt in to run JupyterLab.
LAB_ARGS := --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)
NBVAL    := --nbval-lax --nbval-current-env --nbval-cell-timeout=600 --nbval-kernel-startup-timeout=120

.PHONY: setup lab test test-unit test-notebooks lessons bench clean

$(STAMP): pyproject.toml requirements-lock.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-lock.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3" > /dev/null
	@touch $(STAMP)

setup: $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab $(LAB_ARGS)

test: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest tests notebooks $(NBVAL)

test-unit: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest tests

test-notebooks: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest notebooks $(NBVAL)

# Executes every lesson headless (mode as COURSE_MODE says, default by hardware) into build/ with outputs.
lessons: $(STAMP)
	@mkdir -p build/lessons
	cd notebooks && ../$(BIN)/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=3600 \
		--output-dir ../build/lessons *.ipynb

bench: $(STAMP)
	$(BIN)/python bench/sampling.py
	$(BIN)/python bench/training.py

clean:
	rm -rf build
