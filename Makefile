# make run   - the studio on http://127.0.0.1:8080 with real SDXL + IP-Adapter (downloads ~10 GB once)
# make demo  - the same studio offline, on tiny random models built locally
# make test  - the whole offline test suite
# make quick - the tests that need no model, browser or redis-server (a developer's loop)
# make bench - test_speed.py on the tiny models
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed
# The tiny models use CLIP's real BPE vocabulary, which ships in this package; its own
# dependencies (torchvision) are not needed and would not import beside this torch.
CLIP_VOCAB := clip-anytorch==2.6.0

.PHONY: run demo test quick bench install clean

$(RUNTIME): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps $(CLIP_VOCAB)
	touch $@

$(DEV): $(RUNTIME) requirements-dev.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

install: $(RUNTIME)

run: $(RUNTIME)
	$(BIN)/python app.py $(ARGS)

demo: $(RUNTIME)
	$(BIN)/python app.py --model tiny $(ARGS)

test: $(DEV)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

quick: $(DEV)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(RUNTIME)
	$(BIN)/python test_speed.py --model tiny $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
