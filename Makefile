# Two commands do all the set-up on a fresh machine:
#   make run    run the main job on the embedded default (local Kafka broker, local Spark, the API)
#   make test   run every test (unit and integration, against a real local broker and Spark)
# Both create the virtual environment .venv and install the project into it first.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-heavy test-unit lint install java postgres chromium clean-state help

help:
	@echo "make run   - run the main job (starts and stops what it needs)"
	@echo "make test  - run all tests (unit + integration)"
	@echo "make test-unit - the unit tests only: no network, no broker, no Maven download"
	@echo "make lint  - ruff and mypy (configured in pyproject.toml)"

install: $(STAMP)

$(STAMP): setup.py
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed; set PYTHON=python3.11")'
	@$(MAKE) --no-print-directory java
	@$(MAKE) --no-print-directory postgres
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# Kafka and Spark need a Java 17+ runtime. Installed with apt when missing and allowed.
java:
	@if java -version >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing a Java runtime (openjdk-17-jre-headless)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; \
	else echo "Java 17 or newer is needed: install it (e.g. apt-get install openjdk-17-jre-headless) and retry"; exit 1; fi

# The embedded default's database: Debian's PostgreSQL server programs, installed with apt when missing and allowed.
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing PostgreSQL (Debian package postgresql)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	else echo "PostgreSQL's server is not installed and cannot be installed here (not root or no apt-get); the Postgres sink and tests need it: apt-get install postgresql, or set PIPELINE_POSTGRES_URL"; fi

# The dashboard's browser test drives Debian's headless chromium (never a browser downloaded by playwright).
chromium:
	@if [ -x /usr/bin/chromium ] || [ -x /usr/lib/chromium/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's chromium (headless browser test of the dashboard)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "chromium is not installed and cannot be installed here (not root or no apt-get); the dashboard browser test is skipped: apt-get install chromium"; fi

run: install
	$(PY) cmd/run_cmd.py

# Every test but the heavy group (repeated kill trials, the browser test, the local S3 server, a standalone
# cluster: minutes each, see pytest.ini), so the suite stays well under 45 minutes; `make test-heavy` runs those.
test: install chromium
	$(PY) -m pytest -m "not heavy"

test-heavy: install chromium
	$(PY) -m pytest -m heavy

# The hermetic unit tier (tests/unit, nothing marked integration): an empty jar cache and proxies that
# lead nowhere, so a unit test that downloads or connects fails (tests/unit/conftest.py also refuses it).
test-unit: install
	@cache=$$(mktemp -d); \
	PIPELINE_CACHE_DIR=$$cache http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 \
	HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 no_proxy=127.0.0.1,localhost \
	$(PY) -m pytest tests/unit -m "not integration"; status=$$?; rm -rf "$$cache"; exit $$status

# Lint and type check (seconds): CI runs it before the tests.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy framework

clean-state:
	rm -rf .pipeline output
