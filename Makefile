# govdx — entry points. `make demo` and `make test` set everything up from nothing.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ROWS ?= 100000

.PHONY: install demo test test-fast lint format bench lock clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/govdx demo --rows $(ROWS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

lock:
	rm -rf /tmp/govdx-lock && $(PY) -m venv /tmp/govdx-lock
	/tmp/govdx-lock/bin/pip install --quiet --upgrade pip
	/tmp/govdx-lock/bin/pip install --quiet -e '.[dev]'
	( echo '# Pinned resolution of every govdx dependency (pip freeze of one `pip install -e .[dev]`, Python 3.11).'; \
	  echo '# Regenerate with `make lock`. Used as `pip install -c constraints.txt`.'; \
	  /tmp/govdx-lock/bin/pip freeze --exclude-editable ) > constraints.txt

clean:
	rm -rf var .pytest_cache
