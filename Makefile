# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create the virtual environment (.venv) first if it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_output

.PHONY: venv demo test lint clean

venv: $(STAMP)

$(STAMP): setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The small CPU recipe end to end on the built-in synthetic data: generate
# the dataset, prepare manifests and folds (summary printed), train one fold,
# print the validation and test lwlrap.
demo: venv
	cd recipes/RFCX && ../../$(BIN)/python train.py hparams/small_cpu.yaml \
		--output_root=../../$(DEMO_DIR)

test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check speechbrain_rfcx tests recipes benchmarks
	$(BIN)/ruff format --check speechbrain_rfcx tests recipes benchmarks

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
