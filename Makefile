# The front door.  Every target sets up what it needs (.venv) on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run serve test lint fuzz fuzz-atheris bench load clean help

help:
	@echo "make run    - switch on SQLite + simulated EDC fleet + scenarios + money verdict"
	@echo "make test   - the whole test suite"
	@echo "make serve  - the switch alone on 127.0.0.1:8583 (BPNT_* settings apply)"
	@echo "make lint   - ruff and mypy"
	@echo "make fuzz   - 100,000 hostile inputs against a live switch (zero crashes, zero hangs)"
	@echo "make load   - Locust EDC users, payday spike, against a live switch + money verdict"
	@echo "make bench  - host baseline + the issue-3 sweeps, 60 s a point (SQLite; PostgreSQL + pgbench if up; ~25 min)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	@# PC/SC extra (issue 5): in CI, or where pcscd is installed; needs swig + libpcsclite-dev
	@# when no wheel fits.  Elsewhere the PC/SC tests skip with the reason.
	if [ "$$CI" = true ] || command -v pcscd >/dev/null || [ -x /usr/sbin/pcscd ]; then \
		$(VENV)/bin/pip install --quiet -e '.[dev,pcsc]'; fi
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m terminal_sim.cli demo

# A fresh demo database each time, so the named scenarios start from full wallets.
SERVE_DB := sqlite:///var/serve.db
serve: $(STAMP)
	rm -f var/serve.db var/serve.db-wal var/serve.db-shm var/edc-state.json
	BPNT_DATABASE_URL=$(SERVE_DB) $(PY) -m switch.cli seed-demo
	BPNT_DATABASE_URL=$(SERVE_DB) $(PY) -m switch.cli allocate --period $$(date +%Y-%m)
	BPNT_DATABASE_URL=$(SERVE_DB) $(PY) -m switch.cli serve

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# 100,000 hostile inputs against a live switch on loopback (about 5 minutes).
fuzz: $(STAMP)
	$(PY) -m loadtest.fuzz --inputs 100000

# Coverage-guided (atheris / libFuzzer) on the codec and host path, in process, 5 minutes.
fuzz-atheris: $(STAMP)
	$(VENV)/bin/pip install --quiet -e '.[fuzz]'
	$(PY) -m loadtest.atheris_fuzz -max_total_time=300 -print_final_stats=1 loadtest/fuzz_corpus_bin

# Host-only baseline, then the open-loop TCP bench (issue 3): SQLite sweep, and
# PostgreSQL + pgbench when a server answers on 127.0.0.1:5432.  docs/BENCHMARKS.md.
PG_PROBE := import psycopg; psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3").close()
bench: $(STAMP)
	$(PY) -m loadtest.host_bench --requests 2000
	$(PY) -m loadtest.bench --engine sqlite --sweep 600,1000,1500,1800 --duration-s 60 --out var/bench/sqlite
	if $(PY) -c '$(PG_PROBE)' 2>/dev/null; then \
		$(PY) -m loadtest.bench --engine postgresql --switches 2 --kpm 20000 --connections 768 \
			--sweep 600,1000,1600,2200,2600,2800 --duration-s 60 --pgbench --out var/bench/postgresql; \
	else echo "PostgreSQL not reachable on 127.0.0.1:5432: PostgreSQL bench skipped"; fi

# Locust EDC users (payday spike) against a real switch on loopback, then the money verdict
# (about 75 s; reports in var/load/).  docs/LOAD.md.
load: $(STAMP)
	$(PY) -m loadtest.load

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
