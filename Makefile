# The two commands a newcomer needs: `make run` (serve on the embedded SQLite) and `make test`.
# Production shape: `make certs && make serve` (HTTPS + HTTP/2 as hypercorn.toml says; README "Serving in production").
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 5000

.PHONY: run serve certs test test-sqlite test-postgres services lint install browser loadgen bench bench-search bench-workers clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the pins change; the lock file pins every transitive package too.
$(VENV)/.installed: $(BIN)/activate pyproject.toml requirements.lock
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e ".[test]"
	touch $@

install: $(VENV)/.installed

# Local development: plain HTTP on 127.0.0.1:5000, so the session cookie may not be Secure-only. The event loop is
# uvloop's, as `make bench` and hypercorn.toml run it (docs/performance.md); the access log is on, unlike the bench.
run: install
	CHAT_COOKIE_SECURE=false $(BIN)/chat migrate
	CHAT_COOKIE_SECURE=false CHAT_MIGRATE=false $(BIN)/hypercorn --bind $(HOST):$(PORT) --worker-class uvloop --access-logfile - "chat:create_app()"

# A local certificate authority, and a server and a client certificate signed by it, in certs/ (certs/README.md).
# Extra names for the server certificate: make certs NAMES="chat.example.org 192.0.2.10"
certs: install
	$(BIN)/chat certs --dir certs $(foreach name,$(NAMES),--name $(name))

certs/server.crt:
	$(MAKE) certs

# Production shape: hypercorn.toml (HTTPS with HTTP/2 on :8443, plain HTTP on :8080 redirecting to it).
# CLIENT_CERTS=1 requires a client certificate signed by certs/ca.crt; HTTP3=1 adds HTTP/3 (QUIC) on the HTTPS port.
# Not both: hypercorn's QUIC side never asks for a client certificate, so HTTP/3 would let anyone in.
HTTPS_PORT ?= $(shell $(BIN)/python -c 'import tomllib; print(tomllib.load(open("hypercorn.toml", "rb"))["bind"][0].rsplit(":", 1)[1])')
SERVE_FLAGS = $(if $(filter 1,$(CLIENT_CERTS)),--ca-certs certs/ca.crt --verify-mode CERT_REQUIRED) \
              $(if $(filter 1,$(HTTP3)),--quic-bind 0.0.0.0:$(HTTPS_PORT))
serve: install certs/server.crt
	@if [ "$(CLIENT_CERTS)$(HTTP3)" = 11 ]; then echo "CLIENT_CERTS=1 and HTTP3=1 exclude each other" >&2; exit 2; fi
	@if [ -z "$(HTTPS_PORT)" ]; then echo "no port in hypercorn.toml's bind: set HTTPS_PORT=" >&2; exit 2; fi
	CHAT_HTTPS_PORT=$(HTTPS_PORT) $(BIN)/hypercorn --config hypercorn.toml $(SERVE_FLAGS) "chat:create_app()"

# Browser tests drive Debian's Chromium (Playwright cannot download browsers here); certutil (libnss3-tools)
# makes a test browser trust the certificate authority of `chat certs`.
browser:
	@command -v chromium >/dev/null 2>&1 && command -v certutil >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium libnss3-tools >/dev/null; }

# The load generator of the benchmark harness: Debian's wrk.
loadgen:
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }

# One run of every scenario against chat, the Flask reference (both modes) and bare Quart / raw ASGI, each server
# pinned to CPU 0 and the load to CPU 1: prints the table (docs/performance.md), raw results in bench/results/.
# Durations and sizes: `python -m bench --help` (flags or BENCH_* variables), e.g. BENCH_SEND_SECONDS=5 make bench.
bench: install loadgen
	$(BIN)/python -m bench

# Search latency at 1 M messages and send throughput with and without the search index, on SQLite and PostgreSQL
# (docs/search.md); BENCH_SEARCH_MESSAGES=100000 for a quicker run.
bench-search: install services
	$(BIN)/python -m bench.search

# 1 worker against 2 on PostgreSQL + Redis (send throughput), side by side in one run.
bench-workers: install loadgen services
	$(BIN)/python -m bench.workers

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# PostgreSQL and Redis for the second configuration: used if running, else started (installed if missing).
services:
	@bash tools/services.sh

# The whole suite on the embedded configuration (SQLite + in-process broker), then the backend-facing part of it
# on PostgreSQL + Redis (browser and benchmark tests are about the page and the harness, not the backend).
test: install browser loadgen services lint test-sqlite test-postgres

test-sqlite: install
	$(BIN)/pytest -q

test-postgres: install
	CHAT_TEST_BACKEND=postgres $(BIN)/pytest -q -m "not browser and not bench and not overload"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
