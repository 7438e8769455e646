# Plain targets for a local checkout and for CI (.ci/run calls `make test-fast` and `make test`).
PYTHON ?= python3.11
VENV   := .venv
PIP    := $(VENV)/bin/pip
# What pip installs comes from the lock files, pinned with hashes (--require-hashes);
# the project itself goes in after, editable and --no-deps. `pip check` then fails the
# install if setup.cfg asks for more than the lock gives (refresh it: `make lock`).
LOCKS      := setup.cfg pyproject.toml requirements.lock requirements-test.lock
RUN_STAMP  := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
# The fast tier: config, start-up checks, schedules, MIME, tasks, the import graph, and
# the Lua scripts of the reliable fetch against one redis-server; plus any store/keys/
# states tests (the store's borders among them).
FAST_TESTS := tests/test_config.py tests/test_startup.py tests/test_cron_schedule.py \
              tests/test_cron_validation.py tests/test_mime.py tests/test_tasks.py \
              tests/test_reliable_fetch.py tests/test_submission_data.py tests/test_imports.py \
              $(wildcard tests/test_store*.py tests/test_keys*.py tests/test_states*.py)

.PHONY: venv venv-run run test test-fast lint lock dist clean bench bench-quick bench-curves \
        bench-curves-quick

# venv: the developer's environment (runtime and test tools); venv-run: the runtime only.
venv: $(TEST_STAMP)
venv-run: $(RUN_STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): $(LOCKS) | $(VENV)/bin/python
	$(PIP) install --require-hashes -r requirements.lock
	$(PIP) install --no-deps -e .
	$(PIP) check
	touch $@

$(TEST_STAMP): $(LOCKS) | $(VENV)/bin/python
	$(PIP) install --require-hashes -r requirements-test.lock
	$(PIP) install --no-deps -e .
	$(PIP) check
	touch $@

run: venv-run
	$(VENV)/bin/python mailq.py run --ensure-redis

# nodemailer for tests/test_integrations.py, from its lock file.
NODE_STAMP := tests/clients/node_modules/.installed
$(NODE_STAMP): tests/clients/package.json tests/clients/package-lock.json
	npm ci --prefix tests/clients --no-audit --no-fund
	touch $@

test: venv $(NODE_STAMP)
	$(VENV)/bin/python -m pytest -q

test-fast: venv
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider $(FAST_TESTS)

lint: venv
	$(VENV)/bin/ruff check .

# Refresh the lock files from PyPI (pip's default index, none of this machine's pip
# settings) after changing a dependency in setup.cfg; commit the result.
PIP_COMPILE := env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL \
	PIP_CONFIG_FILE=/dev/null $(VENV)/bin/pip-compile --quiet --no-header --generate-hashes \
	--allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links
lock: venv
	$(PIP) install pip-tools
	$(PIP_COMPILE) --upgrade --output-file requirements.lock setup.cfg
	$(PIP_COMPILE) --upgrade --extra test --extra bench --output-file requirements-test.lock setup.cfg

# The benchmark suite (bench/, docs/benchmark.md): its own redis-server and Postfix's smtp-sink.
SMTP_SINK := /usr/sbin/smtp-sink
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

bench: venv $(SMTP_SINK)
	$(VENV)/bin/python -m bench

bench-quick: venv $(SMTP_SINK)
	$(VENV)/bin/python -m bench --quick

# How cost grows (bench/curves.py): docs/benchmark/curves.json and a PNG a curve, 5 to 7
# minutes on 2 cores (a million mails of history); -quick writes bench/curves/, about 1 minute.
bench-curves: venv $(SMTP_SINK)
	$(VENV)/bin/python -m bench.curves

bench-curves-quick: venv $(SMTP_SINK)
	$(VENV)/bin/python -m bench.curves --quick

$(SMTP_SINK):
	$(SUDO) apt-get update
	echo 'postfix postfix/main_mailer_type select No configuration' | $(SUDO) debconf-set-selections
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y postfix

# dist/mailq.pyz: one file that runs with a plain system Python 3.11+ (scripts/build_pyz.py),
# its dependencies installed from requirements.lock with hashes.
dist: venv-run
	$(VENV)/bin/python scripts/build_pyz.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache tests/artifacts
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
