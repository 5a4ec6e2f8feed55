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

# Generate a synthetic RFCX-format dataset, prepare manifests and folds,
# print a summary.
demo: venv
	$(BIN)/python -m speechbrain_rfcx.data.synthetic --out $(DEMO_DIR)/data \
		--n-train 200 --n-test 50 --seed 1
	$(BIN)/python -m speechbrain_rfcx.data.prepare --data-folder $(DEMO_DIR)/data \
		--save-folder $(DEMO_DIR)/prepared

test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check speechbrain_rfcx tests recipes benchmarks
	$(BIN)/ruff format --check speechbrain_rfcx tests recipes benchmarks

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
