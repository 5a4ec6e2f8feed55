# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create the virtual environment (.venv) first if it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_output

.PHONY: venv demo test lint clean bench-data bench-train bench-infer

venv: $(STAMP)

$(STAMP): setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The small CPU recipe end to end on the built-in synthetic data: generate
# the dataset, prepare manifests and folds (summary printed), train one fold
# (validation and test lwlrap printed), then score the synthetic test set
# (again in full on a rerun, whatever the earlier outputs' settings):
# a Kaggle submission, Raven / Audacity / CSV tables, and one plot.
FOLD := $(DEMO_DIR)/small_cpu/1/fold0
TEST_AUDIO := $(DEMO_DIR)/synthetic_rfcx/test
demo: venv
	cd recipes/RFCX && ../../$(BIN)/python train.py hparams/small_cpu.yaml \
		--output_root=../../$(DEMO_DIR)
	$(BIN)/rfcx-submit --model $(FOLD) --test-folder $(TEST_AUDIO) \
		--sample-submission $(DEMO_DIR)/synthetic_rfcx/sample_submission.csv \
		--out $(DEMO_DIR)/submission.csv
	$(BIN)/rfcx-detect $(TEST_AUDIO) --model $(FOLD) --out $(DEMO_DIR)/detections \
		--format raven,audacity,csv --threshold 0.3 --min-duration 0.2 --merge-gap 0.3 \
		--overwrite
	$(BIN)/rfcx-detect $$(ls $(TEST_AUDIO)/*.flac | head -n 1) --model $(FOLD) \
		--out $(DEMO_DIR)/plot --threshold 0.3 --min-duration 0.2 --plot --overwrite
	@echo "demo outputs: model $(FOLD) (train_log.txt, test_lwlrap.txt),"
	@echo "  submission $(DEMO_DIR)/submission.csv, tables $(DEMO_DIR)/detections/,"
	@echo "  plot $$(ls $(DEMO_DIR)/plot/*.png)"

test: venv
	$(BIN)/python -m pytest -q

# Benchmarks print their figures (benchmarks/RESULTS.md keeps dated ones);
# pass options with ARGS="...".
bench-data: venv
	$(BIN)/python benchmarks/data_loading.py $(ARGS)
bench-train: venv
	$(BIN)/python benchmarks/training.py $(ARGS)
bench-infer: venv
	$(BIN)/python benchmarks/inference.py $(ARGS)

lint: venv
	$(BIN)/ruff check speechbrain_rfcx hparams tests recipes benchmarks
	$(BIN)/ruff format --check speechbrain_rfcx hparams tests recipes benchmarks

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
