# Thin wrappers: every target sets up what it needs first (idempotent).
# The two commands of the README:  make demo   and   make test
SHELL := /bin/bash
PYTHON311 ?= $(shell command -v python3.11 || command -v python3)
VENV      := .venv
BIN       := $(CURDIR)/$(VENV)/bin
PY        := $(BIN)/python
# nbgrader shells out to alembic: the venv's bin must come first on PATH.
export PATH := $(BIN):$(PATH)
JOBS      ?=

.PHONY: setup system release demo grade feedback report test slides lab bench gpu-check clean help hub hub-stop hub-logins
help:
	@echo "make demo    the instructor's loop on the bundled sample class"
	@echo "make test    the whole test suite (installs browser, fonts, bubblewrap when root)"
	@echo "make release regenerate release/ (student version) from source/"
	@echo "make slides  offline reveal.js slides of the lecture deck"
	@echo "make grade   autograde everything under submitted/ (JOBS=n, REGRADE=1)"
	@echo "make report  the class report .grading/report/index.html (distribution, failure reasons)"
	@echo "make lab     JupyterLab with nbgrader and RISE on http://127.0.0.1:8888"
	@echo "make bench   grading and operator benchmarks (prints ratios)"
	@echo "make hub     the class server: JupyterHub on 127.0.0.1, the roster's accounts (as root; docs/hub.md)"
	@echo "make hub-stop  stop the class server (nothing is lost)"
	@echo "make gpu-check  on a GPU machine: grading really uses the GPU (DRY=1: on the CPU)"

setup: $(VENV)/.done
$(VENV)/.done: requirements.txt scripts/setup-venv
	@scripts/setup-venv "$(PYTHON311)" "$(VENV)"
	@touch $@

node_modules/.done: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

system:
	@scripts/system-deps

release: setup
	$(BIN)/nbgrader generate_assignment channels --force
	$(PY) samples/lms/make_archive.py   # the example LMS download is built from release/

demo: setup
	$(PY) -m grading demo $(if $(JOBS),-j $(JOBS))

grade: setup
	$(PY) -m grading grade $(if $(JOBS),-j $(JOBS)) $(if $(REGRADE),--regrade)

feedback: setup
	$(PY) -m grading feedback

report: setup
	$(PY) -m grading report

slides: setup node_modules/.done
	$(PY) course/build_slides.py

test: setup node_modules/.done system
	$(PY) -m pytest -n 2 tests

bench: setup
	$(PY) -m grading.bench

# No `setup`: a GPU machine may only have Python 3.12 and its own torch (see scripts/gpu-check).
gpu-check:
	scripts/gpu-check $(if $(DRY),--dry-run) $(if $(WHEELS),--wheels $(WHEELS))

lab: setup
	$(BIN)/jupyter lab --ip=127.0.0.1 --no-browser $(if $(filter 0,$(shell id -u)),--allow-root)

# The class server (docs/hub.md): JupyterHub on loopback, real accounts from hub/roster.csv,
# the exchange and the formgrader. HUB_PORT=8000 by default; see hub/hubctl.py for the rest.
hub: setup node_modules/.done system
	$(PY) hub/hubctl.py start

hub-stop:
	$(PY) hub/hubctl.py stop

hub-logins:
	$(PY) hub/hubctl.py logins

clean:
	rm -rf submitted autograded/*/ feedback gradebook.db grades.csv grades-canvas.csv grades-moodle.csv .grading course/build test-artifacts
