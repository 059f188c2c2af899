# The README's two commands: `make run` (see it work) and `make test` (pass the tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format bench clean

$(VENV)/.runtime: requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

## run: migrate the embedded SQLite database, create the demo admin, start web server + dispatcher (Ctrl-C stops both)
run: export BASE_URL ?= http://$(HOST):$(PORT)
run: $(VENV)/.runtime
	$(PY) manage.py migrate --noinput
	$(PY) manage.py create_demo_admin
	@echo "Web: $(BASE_URL)/admin/  (Ctrl-C stops the server and the dispatcher)"
	@$(PY) manage.py dispatch_outbox & dispatcher=$$!; \
	  $(PY) manage.py runserver --noreload $(HOST):$(PORT) & server=$$!; \
	  trap 'kill -TERM $$dispatcher $$server 2>/dev/null; wait' INT TERM; \
	  wait

## test: the whole suite (PostgreSQL tests run when DATABASE_URL points at PostgreSQL)
test: $(VENV)/.dev
	$(PY) -m pytest $(PYTEST_ARGS)

## bench: dispatch speed on PostgreSQL (DATABASE_URL; creates and drops its own database), see README "Performance"
bench: $(VENV)/.dev
	$(PY) -m bench.run $(BENCH_ARGS)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

format: $(VENV)/.dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache .ruff_cache .mypy_cache
