# Switchboard: `make help` lists the targets. Everything runs from ./.venv, which `make install`
# creates and fills; every other target installs first, so a fresh clone needs only Python 3.11+.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PACKAGES := libs/common/pyproject.toml $(wildcard services/*/pyproject.toml)

.DEFAULT_GOAL := help
.PHONY: help install run demo broker browser test test-fast bench lint typecheck format check clean images manifests

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "}; /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): requirements-dev.txt $(PACKAGES)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $@

install: $(STAMP) ## Create .venv and install every package (editable) and the dev tools

run: $(STAMP) ## Start the embedded broker and every service (uses SWITCHBOARD_KAFKA_BOOTSTRAP if set); Ctrl-C stops all
	$(BIN)/switchboard-dev run

DEMO_RATE ?= 1
DEMO_DURATION ?= 60
demo: $(STAMP) ## Send demo traffic to a running `make run` (DEMO_RATE=1 msg/s, DEMO_DURATION=60 s)
	$(BIN)/switchboard-dev demo --rate $(DEMO_RATE) --duration $(DEMO_DURATION)

broker: $(STAMP) ## Run only the embedded Kafka-compatible broker on 127.0.0.1:9092
	$(BIN)/switchboard-dev broker

browser: ## Make sure the system Chromium that the dashboard test drives is there (installs it when root)
	@chromium="$${SWITCHBOARD_CHROMIUM:-/usr/bin/chromium}"; \
	if [ ! -x "$$chromium" ]; then \
	  if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	  else \
	    echo "The dashboard test needs Chromium at $$chromium: run 'sudo apt-get install -y chromium' or set SWITCHBOARD_CHROMIUM" >&2; exit 1; \
	  fi; \
	fi

test: $(STAMP) browser ## Run the whole test suite against a real broker (embedded unless SWITCHBOARD_KAFKA_BOOTSTRAP is set)
	$(BIN)/pytest

test-fast: $(STAMP) ## Run only the tests that need no broker
	$(BIN)/pytest -m "not broker"

bench: $(STAMP) ## Run every benchmark on one broker, each figure beside a same-run baseline (BENCH_ARGS=--quick: about a minute)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lint: $(STAMP) ## Check style and lint rules (ruff)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## Type-check every package (mypy strict)
	$(BIN)/mypy libs/common/src $(wildcard services/*/src)

format: $(STAMP) ## Reformat the code and apply safe lint fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check: lint typecheck test ## Everything CI runs

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis

VERSION ?= 0.1.0
images: ## Build the four service images (needs a Docker engine)
	for t in ingest-email ingest-social router notifier; do \
	  docker build -f deploy/docker/Dockerfile --target $$t --build-arg VERSION=$(VERSION) \
	    --build-arg REVISION=$$(git rev-parse HEAD) -t switchboard-$$t:$(VERSION) . || exit 1; \
	done

manifests: ## Render every kustomize overlay to stdout (kubectl kustomize)
	for o in deploy/k8s/overlays/*/; do echo "# --- $$o"; kubectl kustomize $$o || exit 1; done
