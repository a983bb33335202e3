# bikecount: the two commands of a fresh machine are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL ?= gbm

.PHONY: install system-deps run prepare test test-fast typecheck lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CPU PyTorch first, so that resolving the package never pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev,airflow]"
	touch $(STAMP)

install: $(STAMP)  ## Create .venv and install bikecount with its dev tools and Airflow

run: install  ## Start the local stack: MLflow (5000), RegModel API (8000); first start makes data and models
	$(BIN)/bikecount up $(UP_ARGS)

prepare: install  ## Only make the data sets and train one model (no servers)
	$(BIN)/bikecount data prepare
	$(BIN)/bikecount train --model $(MODEL)
	$(BIN)/bikecount models

# Programs some tests drive for real: docker-compose validates the compose file (no engine needed);
# Debian's prometheus package brings prometheus and promtool (config checks, the scrape test);
# Debian's postgresql package the server that the pipeline store is tested on; Debian's chromium
# and chromium-driver the browser that the dashboard is tested in.
system-deps:
	@if ! command -v docker-compose >/dev/null && ! docker compose version >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; } \
	      || echo "note: could not install docker-compose; its check of docker-compose.yaml is skipped"; \
	  else echo "note: install docker-compose to validate docker-compose.yaml in the tests"; fi; \
	fi
	@if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } \
	      || echo "note: could not install prometheus; the promtool checks and the Prometheus test are skipped"; \
	  else echo "note: install prometheus (apt-get install prometheus) for the monitoring tests"; fi; \
	fi
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; } \
	      || echo "note: could not install chromium; the dashboard's browser test will fail"; \
	  else echo "note: install chromium and chromium-driver for the dashboard's browser test"; fi; \
	fi
	@if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; } \
	      || echo "note: could not install postgresql; the PostgreSQL store tests will fail"; \
	  else echo "note: install postgresql (apt-get install postgresql) for the store tests"; fi; \
	fi

test: install system-deps lint typecheck  ## Lint, type-check, then the whole suite (unit, model, integration with real servers)
	$(BIN)/python -m pytest

test-fast: install lint typecheck  ## The inner loop: lint, type-check, the tests that start no server and are quick
	$(BIN)/python -m pytest -m "not slow and not integration"

lint: install  ## ruff: lint and format check
	$(BIN)/ruff check src tests benchmarks dags scripts
	$(BIN)/ruff format --check src tests benchmarks dags scripts

typecheck: install  ## mypy on src/ (configured in pyproject.toml)
	$(BIN)/mypy

bench: install  ## Training benchmark: fit time, memory, size and accuracy per model type
	$(BIN)/python benchmarks/train.py

format: install
	$(BIN)/ruff format src tests benchmarks dags scripts
	$(BIN)/ruff check --fix src tests benchmarks dags scripts

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
