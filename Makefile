# Plain targets for a local checkout and for CI (.ci/run calls `make test`).
PYTHON ?= python3.11
VENV   := .venv
STAMP  := $(VENV)/.installed

.PHONY: venv run test dist clean

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

# dist/mailq.pyz: one file that runs with a plain system Python 3.11+ (scripts/build_pyz.py).
dist: venv
	$(VENV)/bin/python scripts/build_pyz.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache tests/artifacts
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
