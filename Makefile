# qiki-harness: `make run` (smoke scenario on the embedded NATS) and `make test` (the whole suite).
# Both create .venv when missing and install the project into it; nothing else is needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.qiki-installed

.PHONY: install run test lint type check bench clean down

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/qiki-harness run scenarios/smoke.yaml --backend process

# The suite on TEST_WORKERS pytest-xdist workers (many tests wait on servers and sleeps, so
# more workers than cores pays; measured in the README's testing section). `soak`/`serial`
# tests still run alone. TEST_WORKERS=0 runs it in one process, one test at a time.
TEST_WORKERS ?= 4

test: $(STAMP)
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist worksteal --durations=25

lint: $(STAMP)
	$(VENV)/bin/ruff check .

type: $(STAMP)
	$(VENV)/bin/mypy

check: lint type test

down: $(STAMP)
	$(VENV)/bin/qiki-harness down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache reports/*/
