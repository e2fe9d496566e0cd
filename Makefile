# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt setup.py aitrail/store/_spanrows.c \
          aitrail/store/integrity/_digests.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

test: $(STAMP)
	$(BIN)/ruff check aitrail tests benchmarks scripts
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check aitrail tests benchmarks scripts
	$(BIN)/ruff format --check aitrail tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest_file.py

clean:
	rm -rf $(VENV) .demo-store .pytest_cache
