# Plain targets for a local checkout and for CI (.ci/run calls `make test`).
PYTHON ?= python3.11
VENV   := .venv
STAMP  := $(VENV)/.installed

.PHONY: venv run test dist clean bench bench-quick

venv: $(STAMP)

# Reinstall whenever the dependency list in setup.cfg changes.
$(STAMP): setup.cfg pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -e '.[test]'
	touch $(STAMP)

run: venv
	$(VENV)/bin/python mailq.py run --ensure-redis

test: venv
	$(VENV)/bin/python -m pytest -q

# The benchmark suite (bench/, docs/benchmark.md): its own redis-server and Postfix's smtp-sink.
SMTP_SINK := /usr/sbin/smtp-sink
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

bench: venv $(SMTP_SINK)
	$(VENV)/bin/python -m bench

bench-quick: venv $(SMTP_SINK)
	$(VENV)/bin/python -m bench --quick

$(SMTP_SINK):
	$(SUDO) apt-get update
	echo 'postfix postfix/main_mailer_type select No configuration' | $(SUDO) debconf-set-selections
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y postfix

# dist/mailq.pyz: one file that runs with a plain system Python 3.11+ (scripts/build_pyz.py).
dist: venv
	$(VENV)/bin/python scripts/build_pyz.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache tests/artifacts
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
