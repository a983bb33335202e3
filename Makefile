# bikecount: the two commands of a fresh machine are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL ?= gbm

.PHONY: install run test lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CPU PyTorch first, so that resolving the package never pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## Create .venv and install bikecount with its dev tools

run: install  ## Prepare data (generated when none is present) and train a first model
	$(BIN)/bikecount data prepare
	$(BIN)/bikecount train --model $(MODEL)
	$(BIN)/bikecount models

test: install  ## Lint, then the whole test suite (unit, model, integration with real servers)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/python -m pytest

bench: install  ## Training benchmark: fit time, memory, size and accuracy per model type
	$(BIN)/python benchmarks/train.py

format: install
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
