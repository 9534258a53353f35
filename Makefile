# Every install step lives here, so that a fresh machine gets what CI gets.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/imhub demo --config config/hub.yml

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check hub plugins tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/http_api.py

clean:
	rm -rf $(VENV) data
