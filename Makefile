# music-rl: every target creates the virtual environment when it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# one stamp per set of extras installed: `make train` installs the project and its dev tools, `make test` adds
# the sweep plugins (Ray, Optuna, submitit: pyproject.toml's extra "sweeps") and the approximate neighbour indexes
# (faiss-cpu, hnswlib: the extra "ann") to the same venv
STAMP  := $(VENV)/.installed-dev
STAMP_SWEEPS := $(VENV)/.installed-dev-sweeps-ann
comma  := ,

.PHONY: venv train test test-fast sweep tensorboard bench docs lint typecheck clean

venv: $(STAMP)

$(VENV)/.installed-%: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(subst -,$(comma),$*)]"
	touch $@

train: $(STAMP)  ## the main job on the embedded synthetic catalog
	$(VENV)/bin/music-rl train $(ARGS)

# A test file is one unit of work (tests/conftest.py), handed out in the order collected: tests/integration/ (the
# long files) first, so that no long file starts last (xdist's default reorder puts the files of most tests first).
XDIST := -n 2 --dist loadgroup --no-loadscope-reorder

test: $(STAMP_SWEEPS)  ## the test suite (with the launcher and sweeper plugins and the ann indexes), one worker per core
	$(PY) -m pytest $(XDIST) $(ARGS)

test-fast: $(STAMP_SWEEPS)  ## the unit tests without the slow ones (whole commands, training runs): under 2 minutes
	$(PY) -m pytest -m "not slow" $(XDIST) $(ARGS)

# The design's offline experiment: PPO learns from the propagated reward table, so the decay matters.
SWEEP_SOURCE ?= env.reward_source=propagated
# replicates of every configuration, e.g. SEEDS=0,1,2,3,4 (music-rl compare then gives IQM intervals)
SEEDS ?=

sweep: $(STAMP)  ## 18-job sweep: latent_dim x like_weight x decay (x SEEDS), joblib launcher
	$(VENV)/bin/music-rl train -m vae.latent_dim=2,4,5 reward.like_weight=10,100 \
		reward.decay=linear,exponential,gaussian $(SWEEP_SOURCE) $(if $(SEEDS),seed=$(SEEDS)) $(ARGS)

tensorboard: $(STAMP)  ## every run and sweep job side by side
	$(VENV)/bin/tensorboard --logdir outputs $(ARGS)

bench: $(STAMP)  ## speed, memory and scale figures -> bench.json
	$(VENV)/bin/music-rl bench $(ARGS)

docs: $(VENV)/.installed-docs  ## the documentation site (mkdocs.yml) into site/; any warning fails it
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

lint: $(STAMP)  ## ruff (pyproject.toml's [tool.ruff])
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)  ## mypy, strict on all the code (pyproject.toml's [tool.mypy])
	$(VENV)/bin/mypy

clean:
	rm -rf outputs multirun site .pytest_cache .ruff_cache .mypy_cache
