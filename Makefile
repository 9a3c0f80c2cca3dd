# ilrma: install, test, demo, bench. Works on a fresh machine that has only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint demo bench quality clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,plot,dask]'
	$(BIN)/python -c 'from ilrma_cli.engine.compiled import warm_up; warm_up()'  # compile once
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install lint
	$(BIN)/python -m pytest

demo: install
	$(BIN)/ilrma separate sample_data/mix.wav -o out/demo --force \
		--refs sample_data/src1.wav sample_data/src2.wav --loss-plot

bench: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/bench_evaluate.py
	$(BIN)/python bench/run.py
	$(BIN)/python bench/crosscheck_ssspy.py

quality: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/quality.py

clean:
	rm -rf $(VENV) out build *.egg-info
