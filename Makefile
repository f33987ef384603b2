# csmri — common tasks. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= quick_open
DATA    ?=
PYTEST_ARGS ?=
MODULES ?=

.DEFAULT_GOAL := help
.PHONY: help venv test test-fast lint format bench mutation mutation-hand reproduce study phantom clean sync-wandb

help:  ## list targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)  ## create .venv and install csmri (editable, dev extra) pinned by constraints.txt

test: venv  ## run the test suite (all of it, the slow end-to-end runs included)
	WANDB_MODE=disabled $(PY) -m pytest -q -n 2 --dist worksteal $(PYTEST_ARGS)

test-fast: venv  ## the test suite without the tests marked slow (end-to-end training runs, wheel build)
	WANDB_MODE=disabled $(PY) -m pytest -q -n 2 --dist worksteal -m "not slow" $(PYTEST_ARGS)

lint: venv  ## ruff check + format check
	$(VENV)/bin/ruff check csmri tests experiments
	$(VENV)/bin/ruff format --check csmri tests experiments

format: venv  ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix csmri tests experiments
	$(VENV)/bin/ruff format csmri tests experiments

bench: venv  ## stage-1 throughput and mask-drawing share (prints figures)
	$(PY) -m experiments.bench

mutation: venv  ## mutation testing (mutmut) of the science-critical modules; kill rate per module (MODULES=physics ...)
	$(PY) -m experiments.mutation $(MODULES)

mutation-hand: venv  ## hand-made mutants of the adversarial training step, each against the tests that pin it
	$(PY) -m experiments.hand_mutants

phantom: venv  ## write the default phantom dataset to data/phantom
	$(VENV)/bin/csmri data phantom --out data/phantom

reproduce: venv  ## the main job: data -> stage 1 -> ... -> results/ (PROFILE=quick_open|quick|paper|smoke, DATA=dir)
	$(VENV)/bin/csmri reproduce profile=$(PROFILE) $(if $(DATA),data.root=$(DATA)) $(if $(RESULTS),results=$(RESULTS))

study: venv  ## the alpha / loss-weight study of stage 2 (validation split) -> results/study/
	$(VENV)/bin/csmri study

sync-wandb: venv  ## upload the offline W&B runs under outputs/ (needs `wandb login`)
	$(PY) -m csmri.app.sync_wandb outputs

clean:  ## remove caches (keeps .venv, data and outputs)
	rm -rf .pytest_cache .ruff_cache $$(find . -name __pycache__ -not -path './.venv/*')
