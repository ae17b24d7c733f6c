# The README's two commands: `make demo` and `make test`. Both create .venv and install what they need.
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3
INSTALLED := $(VENV)/.installed
NEXUS_HOME ?= $(CURDIR)/.nexus
DAGSTER_HOME ?= $(NEXUS_HOME)/dagster
export DO_NOT_TRACK := 1

.PHONY: install system demo test dev mlflow serve exporter stack bench lint lock clean

$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet --constraint constraints.txt --editable '.[dev]'
	touch $@

install: $(INSTALLED)

# Debian packages the full-stack test drives: Prometheus (scrapes the stack, promtool tests the alert rules),
# Alertmanager and the Blackbox exporter (alerting and probes), docker-compose (validates the file), Chromium (the
# browser test of the Dagster UI).
DEBIAN_PACKAGES := prometheus prometheus-alertmanager prometheus-blackbox-exporter docker-compose chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

system:
	@missing=""; for program in $(DEBIAN_PACKAGES); do command -v $$program >/dev/null || missing="$$missing $$program"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing from Debian:$$missing"; \
		$(SUDO) apt-get install -y --no-install-recommends $$missing >/dev/null \
		|| { $(SUDO) apt-get update >/dev/null && $(SUDO) apt-get install -y --no-install-recommends $$missing >/dev/null; }; \
	fi

demo: install  ## install, then run the platform end to end on the embedded default: train, gate, serve, monitor, retrain
	$(BIN)/nexus demo

# Two workers (pytest-xdist): most tests wait on Dagster's event log, servers and subprocesses as much as they
# compute. A file's tests stay on one worker, so a module's servers start once (`--dist loadgroup` does not group
# under pytest 9.2: xdist 3.8 renames node ids the way pytest no longer reads).
TEST_WORKERS ?= 2

test: install system  ## install, then run the test suite
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

dev: install  ## the Dagster UI on http://127.0.0.1:3000 over the same embedded store as the demo
	NEXUS_HOME=$(NEXUS_HOME) DAGSTER_HOME=$(DAGSTER_HOME) exec $(BIN)/nexus dev --host 127.0.0.1 --port 3000

mlflow: install  ## the MLflow UI on http://127.0.0.1:5000 over the embedded tracking store
	$(BIN)/mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///$(NEXUS_HOME)/mlflow/mlflow.db

serve: install  ## the champion over HTTP on http://127.0.0.1:3001 from the newest Bento (`nexus serve --source`: the checkout's code)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/nexus serve --host 127.0.0.1 --port 3001

exporter: install  ## Prometheus metrics of drift, performance and predictions on http://127.0.0.1:9108/metrics
	NEXUS_HOME=$(NEXUS_HOME) $(BIN)/nexus exporter --host 127.0.0.1 --port 9108

stack: install system  ## the production stack as local processes (PostgreSQL here, S3, MLflow, Dagster, serving, Prometheus, Alertmanager, Blackbox)
	$(BIN)/nexus stack

bench: install  ## serving benchmark against mlflow models serve and a bare ASGI app (needs wrk and `make demo`)
	$(BIN)/python benchmarks/serving_bench.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

lock: install  ## refresh constraints.txt after changing dependencies in pyproject.toml
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e ' > constraints.txt

clean:
	rm -rf $(VENV) .nexus
