# music-rl: every target creates the virtual environment when it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv train test sweep tensorboard bench lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

train: $(STAMP)  ## the main job on the embedded synthetic catalog
	$(PY) scripts/train.py $(ARGS)

test: $(STAMP)  ## the test suite
	$(PY) -m pytest $(ARGS)

# The design's offline experiment: PPO learns from the propagated reward table, so the decay matters.
SWEEP_SOURCE ?= env.reward_source=propagated

sweep: $(STAMP)  ## 18-job sweep: latent_dim x like_weight x decay, joblib launcher
	$(PY) scripts/train.py -m vae.latent_dim=2,4,5 reward.like_weight=10,100 \
		reward.decay=linear,exponential,gaussian $(SWEEP_SOURCE) $(ARGS)

tensorboard: $(STAMP)  ## every run and sweep job side by side
	$(VENV)/bin/tensorboard --logdir outputs $(ARGS)

bench: $(STAMP)  ## speed, memory and scale figures -> bench.json
	$(PY) scripts/bench.py $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache
