# The front door.  Every target sets up what it needs (.venv) on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: native run serve console test lint fuzz fuzz-atheris bench scale-bench stock-bench idle-connections load load-ui chaos haproxy pg-standby lock clean help

help:
	@echo "make run    - switch on SQLite + simulated EDC fleet + scenarios + money verdict"
	@echo "make test   - the whole test suite"
	@echo "make serve  - the switch alone on 127.0.0.1:8583 (BPNT_* settings apply)"
	@echo "make console - the operations console on 127.0.0.1:8080 over the demo world (var/console.db),"
	@echo "              with one demo user per role (logins printed); docs/CONSOLE.md"
	@echo "make lint   - ruff and mypy"
	@echo "make native - compile the purchase path with mypyc into build/native (the targets above do it"
	@echo "              when needed); says whether this Python uses it (switch/native.py)"
	@echo "make fuzz   - 100,000 hostile inputs against a live switch (zero crashes, zero hangs)"
	@echo "make load   - Locust EDC users, payday spike, against a live switch + money verdict"
	@echo "              (ENGINE=postgresql: a fresh PostgreSQL database; WORKERS=N: N Locust workers)"
	@echo "make chaos  - every chaos scenario (DB outage, kill -9, SIGSTOP, broker, link toxics, serial noise,"
	@echo "              MQTT flood, a switch killed behind HAProxy) under EDC load, each judged by the"
	@echo "              history checker (CI=true: short)"
	@echo "make load-ui - the same with Locust's web UI on 127.0.0.1 until Ctrl-C, then the verdict"
	@echo "make haproxy - SWITCHES=2 switches on one fresh PostgreSQL database behind ONE HAProxy address"
	@echo "              (TCP, echo-test health checks); prints the address; Ctrl-C stops it all."
	@echo "              ENGINE=sqlite, DURATION=S (stop by itself); docs/SCALING.md"
	@echo "make pg-standby - a PostgreSQL primary + synchronous standby of our own on two free loopback ports;"
	@echo "              prints the switch's multi-host BPNT_DATABASE_URL and the PIDs; stops by itself after"
	@echo "              DURATION=S (600); FAILOVER=S kills the primary (SIGKILL) at S and promotes the standby; docs/SCALING.md"
	@echo "make bench  - host baseline + the issue-3 sweeps, 60 s a point (SQLite; PostgreSQL + pgbench if up; ~25 min)"
	@echo "make scale-bench - issue 17: 1, 2, 3 switch processes on PostgreSQL + pgbench, one run, plotted (~8 min)"
	@echo "make stock-bench - issue 14: 32 terminals of one e-warong buy one item at 500/s for 30 s,"
	@echo "              stock = received - sold exactly (ENGINE=sqlite|postgresql, ~2 min)"
	@echo "make idle-connections - issue 17: 10,000 idle TCP connections held by one switch while one"
	@echo "              purchase is answered within 1 s (CONNECTIONS=N, ENGINE=sqlite|postgresql, ~15 s)"
	@echo "make lock   - refresh requirements/*.lock (hashed pins) to the newest releases pyproject.toml allows;"
	@echo "              make lock KEEP=1 keeps today's pins and only re-resolves what pyproject.toml changed"

# Installs come from the hashed lock files in requirements/ (make lock writes them), not
# from whatever PyPI serves that day; pyproject.toml keeps the ranges for the package's users.
LOCKS := requirements/pip.lock requirements/dev.lock requirements/pcsc.lock
$(STAMP): pyproject.toml $(LOCKS)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --require-hashes -r requirements/pip.lock
	@# PC/SC extra (issue 5): in CI, or where pcscd is installed, pcsc.lock (dev.lock + pyscard);
	@# needs swig + libpcsclite-dev when no wheel fits.  Elsewhere the PC/SC tests skip with the reason.
	if [ "$$CI" = true ] || command -v pcscd >/dev/null || [ -x /usr/sbin/pcscd ]; then \
		lock=requirements/pcsc.lock; else lock=requirements/dev.lock; fi; \
		$(VENV)/bin/pip install --quiet --require-hashes -r $$lock
	@# The project itself, editable, with no dependencies of its own (the lock brought them);
	@# its build backend (setuptools) comes through pip's build isolation, outside the hash check.
	$(VENV)/bin/pip install --quiet --no-deps -e .
	@touch $(STAMP)

# The purchase path compiled with mypyc (switch/native.py): rebuilt when any switch/ source
# changes (about 35-60 s); used only while it matches every source, and without a C compiler
# the switch runs as pure Python, the same code.  BPNT_NATIVE=0 runs pure Python anyway.
NATIVE := build/native/.made
NATIVE_SOURCES := $(shell find switch -name '*.py' -not -path '*/migrations/*')
$(NATIVE): $(STAMP) $(NATIVE_SOURCES)
	$(PY) -m switch.native_build
	@mkdir -p build/native && touch $@
native: $(NATIVE)
	@$(PY) -m switch.native_build --check

# The console's charts library (Chart.js, pinned in console/web/package-lock.json), from
# npm at install time, served from /static/vendor: never a CDN (no internet at run time).
# npm ci uses npm's cache, so it works offline after the first install.
CHART_JS := console/static/vendor/chart.umd.js
$(CHART_JS): console/web/package.json console/web/package-lock.json
	npm ci --prefix console/web --ignore-scripts --no-audit --no-fund
	mkdir -p console/static/vendor
	cp console/web/node_modules/chart.js/dist/chart.umd.js $@

run: $(STAMP) $(NATIVE) $(CHART_JS)
	$(PY) -m terminal_sim.cli demo
	@echo "the console opens this run's database: BPNT_DATABASE_URL=sqlite:///var/demo.db make console"

# A fresh demo database each time, so the named scenarios start from full wallets.
SERVE_DB := sqlite:///var/serve.db
serve: $(STAMP) $(NATIVE)
	rm -f var/serve.db var/serve.db-wal var/serve.db-shm var/edc-state.json
	BPNT_DATABASE_URL=$(SERVE_DB) $(PY) -m switch.cli seed-demo
	BPNT_DATABASE_URL=$(SERVE_DB) $(PY) -m switch.cli allocate --period $$(date +%Y-%m)
	BPNT_DATABASE_URL=$(SERVE_DB) $(PY) -m switch.cli serve

# The console over the demo world: seeded (and this month allocated) once into
# var/console.db, or over BPNT_DATABASE_URL when set (e.g. the database make run left).
CONSOLE_DB ?= sqlite:///var/console.db
console: $(STAMP) $(NATIVE) $(CHART_JS)
	@if [ -z "$$BPNT_DATABASE_URL" ] && [ ! -f var/console.db ]; then \
		BPNT_DATABASE_URL=$(CONSOLE_DB) $(PY) -m switch.cli seed-demo && \
		BPNT_DATABASE_URL=$(CONSOLE_DB) $(PY) -m switch.cli allocate --period $$(date +%Y-%m); fi
	BPNT_DATABASE_URL=$${BPNT_DATABASE_URL:-$(CONSOLE_DB)} $(PY) -m switch.cli console seed-demo-users
	BPNT_DATABASE_URL=$${BPNT_DATABASE_URL:-$(CONSOLE_DB)} $(PY) -m switch.cli console

# The suite on the compiled build, then the deciders, codec and crypto tests and every doctest
# (those of compiled modules are skipped above: conftest.py) again in pure
# Python (BPNT_NATIVE=0): one source, two builds, the same answers.
test: $(STAMP) $(NATIVE) $(CHART_JS)
	$(PY) -m switch.native_build --check
	$(PY) -m pytest
	BPNT_NATIVE=0 $(PY) -m pytest -q tests/core tests/protocol tests/security switch

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# 100,000 hostile inputs against a live switch on loopback (about 5 minutes).
fuzz: $(STAMP) $(NATIVE)
	$(PY) -m loadtest.fuzz --inputs 100000

# Coverage-guided (atheris / libFuzzer) on the codec and host path, in process, 5 minutes.
fuzz-atheris: $(STAMP) requirements/fuzz.lock
	$(VENV)/bin/pip install --quiet --require-hashes -r requirements/fuzz.lock
	$(PY) -m loadtest.atheris_fuzz -max_total_time=300 -print_final_stats=1 loadtest/fuzz_corpus_bin

# Host-only baseline, then the open-loop TCP bench (issue 3): SQLite sweep, and
# PostgreSQL + pgbench when a server answers on 127.0.0.1:5432.  docs/BENCHMARKS.md.
PG_PROBE := import psycopg; psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3").close()
bench: $(STAMP) $(NATIVE)
	$(PY) -m loadtest.host_bench --requests 2000
	$(PY) -m loadtest.bench --engine sqlite --sweep 600,1000,1500,1800 --duration-s 60 --out var/bench/sqlite
	if $(PY) -c '$(PG_PROBE)' 2>/dev/null; then \
		$(PY) -m loadtest.bench --engine postgresql --switches 2 --kpm 20000 --connections 768 \
			--sweep 600,1000,1600,2200,2600,2800 --duration-s 60 --pgbench --out var/bench/postgresql; \
	else echo "PostgreSQL not reachable on 127.0.0.1:5432: PostgreSQL bench skipped"; fi

# Issue 17: 1, 2 and 3 switch processes on one PostgreSQL, one after the other in one run,
# then pgbench on the same server; the table, the ratios and var/bench/scale/scale-postgresql.png.
scale-bench: $(STAMP) $(NATIVE)
	$(PY) -m loadtest.scale_bench --processes 1,2,3 --sweep 1000,2000 --duration-s 20

# Issue 14's acceptance point: one e-warong's 32 terminals buy one item open-loop at 500/s
# for 30 s against 10,000 units received (the shelf runs out mid-run: ST under load too);
# stock = received - sold exactly, and the money invariant.  ENGINE=postgresql for the other.
ENGINE ?= sqlite
stock-bench: $(STAMP) $(NATIVE)
	$(PY) -m loadtest.stock_bench --engine $(ENGINE) --terminals 32 --rate 500 --duration-s 30 \
		--item BRS005 --units-per-purchase 1 --received 10000

# Issue 17's acceptance line: CONNECTIONS (10,000) idle TCP connections held by ONE real
# switch (its /metrics gauge and every client socket checked) while one EDC purchase is
# answered within 1 s; a fresh demo database (SQLite in a temp dir; ENGINE=postgresql).
# Needs about CONNECTIONS + 128 open files here (ulimit -Hn); docs/SCALING.md.
CONNECTIONS ?= 10000
idle-connections: $(STAMP) $(NATIVE)
	$(PY) -m loadtest.idle_connections --connections $(CONNECTIONS) --engine $(ENGINE)

# Locust EDC users (payday spike) against a real switch on loopback, then the money verdict
# (about 75 s; reports in var/load/).  ENGINE=postgresql: a fresh database on 127.0.0.1:5432,
# dropped afterwards; WORKERS=N: a Locust master and N worker processes.  docs/LOAD.md.
WORKERS ?= 0
LOAD_ARGS = --engine $(ENGINE) --workers $(WORKERS)
load: $(STAMP) $(NATIVE)
	$(PY) -m loadtest.load $(LOAD_ARGS)

# The same with Locust's web UI on 127.0.0.1 (URL printed), up until Ctrl-C (at most 2 h),
# then the verdict.
load-ui: $(STAMP) $(NATIVE)
	$(PY) -m loadtest.load --ui $(LOAD_ARGS)

# Chaos (FAILURES F1, F8, F13, F14; docs/CHAOS.md): each scenario under EDC load with its
# fault, on each engine, then the Jepsen-style verdict from the terminals' history against
# the database; reports in var/chaos/.  CI=true or CHAOS_FLAGS=--ci: the short versions.
# The SQLite db-outage needs root (a tmpfs); PostgreSQL runs the harness's own cluster and
# the broker scenarios their own Mosquitto, never the services on 5432 and 1883.
CHAOS_FLAGS ?= $(if $(filter true,$(CI)),--ci)
chaos: $(STAMP) $(NATIVE)
	$(PY) -m loadtest.chaos all $(CHAOS_FLAGS)

# Several switches behind one address (docs/SCALING.md): SWITCHES `bpnt-switch serve` processes
# on free loopback ports over one fresh database (PostgreSQL on 127.0.0.1:5432 by default,
# seeded with the demo world, dropped at the end; ENGINE=sqlite for a file), Debian's haproxy
# in front (TCP mode, leastconn, a real echo test as its health check) with a config of its
# own in var/haproxy/; the one address EDCs use is printed.  Ctrl-C or SIGTERM stops
# haproxy and the switches by PID; DURATION=S stops it all after S seconds.
SWITCHES ?= 2
HAPROXY_ENGINE = $(if $(filter command line environment,$(origin ENGINE)),$(ENGINE),postgresql)
haproxy: $(STAMP) $(NATIVE)
	$(PY) -m loadtest.haproxy --switches $(SWITCHES) --engine $(HAPROXY_ENGINE) \
		$(if $(DURATION),--duration-s $(DURATION))

# PostgreSQL that fails over (docs/SCALING.md): two clusters of our own (initdb + pg_basebackup
# in a temporary directory, run as postgres when root, loopback only), the standby synchronous
# (synchronous_standby_names, synchronous_commit=on); the multi-host URL for BPNT_DATABASE_URL is
# printed.  Both stop by their data directories after DURATION seconds (600) or on Ctrl-C /
# SIGTERM, and are removed.  FAILOVER=S: SIGKILL the primary S seconds in, promote the standby.
pg-standby: $(STAMP) $(NATIVE)
	$(PY) -m loadtest.pg_standby $(if $(DURATION),--duration-s $(DURATION)) \
		$(if $(FAILOVER),--failover-after-s $(FAILOVER))

# Regenerate the lock files from pyproject.toml with uv (pinned and hash-checked itself, in a
# venv of its own): every release that the ranges allow, newest first, for CPython 3.11 on
# Linux x86_64, with the hashes of all of a release's files.  pcsc.lock and fuzz.lock are
# dev.lock plus pyscard / atheris, held to dev.lock's pins.  KEEP=1: keep the current pins,
# only resolve what a change to pyproject.toml needs.  Commit requirements/ afterwards.
LOCK_VENV := .venv-lock
UV := $(LOCK_VENV)/bin/uv
LOCK_FLAGS = --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	--custom-compile-command 'make lock' $(if $(KEEP),,--upgrade)
$(LOCK_VENV)/.installed-stamp: requirements/uv-tool.lock
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet --require-hashes -r requirements/uv-tool.lock
	@touch $@
lock: $(LOCK_VENV)/.installed-stamp
	$(UV) pip compile $(LOCK_FLAGS) requirements/pip.in -o requirements/pip.lock
	$(UV) pip compile $(LOCK_FLAGS) requirements/uv-tool.in -o requirements/uv-tool.lock
	$(UV) pip compile $(LOCK_FLAGS) pyproject.toml --extra dev -o requirements/dev.lock
	$(UV) pip compile $(LOCK_FLAGS) pyproject.toml --extra dev --extra pcsc \
		-c requirements/dev.lock -o requirements/pcsc.lock
	$(UV) pip compile $(LOCK_FLAGS) pyproject.toml --extra dev --extra fuzz \
		-c requirements/dev.lock -o requirements/fuzz.lock

clean:
	rm -rf $(VENV) $(LOCK_VENV) var build .pytest_cache .mypy_cache .ruff_cache .hypothesis
