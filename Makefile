# bikecount: the two commands of a fresh machine are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL ?= gbm

.PHONY: install system-deps run prepare test test-fast typecheck lint format docs bench clean

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

# Programs some tests drive for real, from Debian's packages:
# - docker.io (the engine, dockerd, that the container test starts when none runs),
#   docker-compose (v1, bookworm's; it also validates the compose file) and debootstrap (the
#   stand-ins for registry images, which these machines cannot pull);
# - prometheus (prometheus, promtool: config checks, the scrape test) and
#   prometheus-alertmanager (alertmanager, amtool: alerts delivered to a local webhook);
# - postgresql (the server the pipeline store is tested on);
# - chromium and chromium-driver (the browser the dashboard is tested in).
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends
system-deps:
	@missing=""; \
	command -v dockerd >/dev/null || missing="$$missing docker.io"; \
	command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	command -v debootstrap >/dev/null || missing="$$missing debootstrap"; \
	{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing="$$missing prometheus"; \
	{ command -v amtool >/dev/null && { command -v alertmanager >/dev/null || command -v prometheus-alertmanager >/dev/null; }; } \
	  || missing="$$missing prometheus-alertmanager"; \
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; \
	    { apt-get update -qq && $(APT_INSTALL) $$missing >/dev/null; } \
	      || echo "note: could not install$$missing; the tests that need them fail or are skipped"; \
	  else echo "note: install$$missing (apt-get install, as root) for the tests that drive them"; fi; \
	fi

test: install system-deps lint typecheck  ## Lint, type-check, then the whole suite (unit, model, integration with real servers)
	$(BIN)/python -m pytest

test-fast: install lint typecheck  ## The inner loop: lint, type-check, the tests that start no server and are quick
	$(BIN)/python -m pytest -m "not slow and not integration"

lint: install  ## ruff: lint and format check
	$(BIN)/ruff check src tests benchmarks dags scripts deploy/ci
	$(BIN)/ruff format --check src tests benchmarks dags scripts deploy/ci

typecheck: install  ## mypy on src/ (configured in pyproject.toml)
	$(BIN)/mypy

docs: install  ## Regenerate docs/configuration.md from bikecount.config.Settings
	$(BIN)/python scripts/settings_doc.py > docs/configuration.md

bench: install  ## Training benchmark: fit time, memory, size and accuracy per model type
	$(BIN)/python benchmarks/train.py

format: install
	$(BIN)/ruff format src tests benchmarks dags scripts deploy/ci
	$(BIN)/ruff check --fix src tests benchmarks dags scripts deploy/ci

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
