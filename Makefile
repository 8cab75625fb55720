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
# A=name: one assignment (source/<name>/) for grade and feedback; default: every one. `make report`
# always writes every assignment's page and the course's.
A         ?=
ASSIGNMENTS = $(patsubst source/%/,%,$(sort $(dir $(wildcard source/*/*.ipynb))))

.PHONY: setup system release demo grade feedback report test test-fast slides present lab bench gpu-check clean help hub hub-stop hub-logins
help:
	@echo "make demo    the instructor's loop on the bundled sample class (installs bubblewrap when root)"
	@echo "make test    the whole test suite (installs browser, fonts, bubblewrap when root)"
	@echo "make test-fast  the unit tests only (pytest -m fast, under a minute)"
	@echo "make release regenerate release/ (student versions) of every assignment from source/"
	@echo "make present the lecture as a full-window RISE slideshow, figures drawn (PORT=n; Ctrl+C stops)"
	@echo "make slides  offline reveal.js slides of the lecture deck"
	@echo "make grade   autograde everything under submitted/ (A=assignment, JOBS=n, REGRADE=1)"
	@echo "make feedback  feedback pages for the graded submissions (A=assignment)"
	@echo "make report  the class reports: .grading/report/index.html, one page per assignment"
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

# An assignment that uses the engine's test-cell API gets the engine's current testkit.py first.
release: setup
	@for a in $(ASSIGNMENTS); do \
	  if [ -f source/$$a/testkit.py ]; then cp grading/jail/testkit.py source/$$a/testkit.py; fi; \
	  echo "nbgrader generate_assignment $$a"; $(BIN)/nbgrader generate_assignment $$a --force || exit 1; done
	$(PY) samples/lms/make_archive.py   # the example LMS download is built from release/

# `system` first: the demo grades in the bubblewrap sandbox, and its report's charts need the CJK font.
demo: system setup node_modules/.done
	$(PY) -m grading demo $(if $(JOBS),-j $(JOBS))

grade: setup
	$(PY) -m grading grade $(if $(A),$(A),--all) $(if $(JOBS),-j $(JOBS)) $(if $(REGRADE),--regrade)

feedback: setup node_modules/.done
	$(PY) -m grading feedback $(if $(A),$(A),--all)

report: setup
	$(PY) -m grading report

slides: setup node_modules/.done
	$(PY) course/build_slides.py

test: system setup node_modules/.done
	$(PY) -m pytest -n 2 tests

test-fast: setup
	$(PY) -m pytest -m fast -n 2 tests

bench: setup
	$(PY) -m tools.bench

# No `setup`: a GPU machine may only have Python 3.12 and its own torch (see scripts/gpu-check).
gpu-check:
	scripts/gpu-check $(if $(DRY),--dry-run) $(if $(WHEELS),--wheels $(WHEELS))

# Runs a copy of the deck in .present/ (the tracked one stays clean) and serves it with JupyterLab:
# the printed /rise/ address is the slideshow itself, not Alt+R's split preview.
present: setup
	$(PY) course/present.py $(if $(PORT),--port $(PORT)) $(if $(TOKEN),--token $(TOKEN))

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
