# ilrma: install, test, demo, bench. Works on a fresh machine that has only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint demo bench quality clean

install: $(STAMP)
	@$(BIN)/python -m ilrma_cli.engine.aot

$(STAMP): pyproject.toml
	@echo "==> make install: creating the virtual environment $(VENV)/ (once)"
	$(PYTHON) -m venv $(VENV)
	@echo "==> installing ilrma and its dependencies into $(VENV)/ (a minute or two)"
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,plot,dask]'
	touch $(STAMP)
	@echo "==> installed: $(BIN)/ilrma"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install lint
	$(BIN)/python -m pytest

demo: install
	@echo "==> separating sample_data/mix.wav (2 talkers, 2 microphones) into out/demo/mix/, scored against sample_data/src1.wav and src2.wav"
	$(BIN)/ilrma separate sample_data/mix.wav -o out/demo --force \
		--refs sample_data/src1.wav sample_data/src2.wav --loss-plot
	@echo "==> wrote out/demo/mix/: source1.wav, source2.wav, loss.png (loss per iteration), report.json (the scores above)"

bench: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/bench_evaluate.py
	$(BIN)/python bench/run.py
	$(BIN)/python bench/crosscheck_ssspy.py
	$(BIN)/python bench/fullrank_bench.py --markdown
	$(BIN)/python bench/taps_bench.py --markdown
	$(BIN)/python bench/long_memory.py
	$(BIN)/python bench/threads.py --markdown

quality: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/quality.py
	@echo "==> reverberant dev rooms: SDRi against the early image and the full image (joint dereverberation, WPE cascade)"
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/quality.py --set reverb

clean:
	rm -rf $(VENV) out build *.egg-info ilrma_cli/engine/_kernels_*
