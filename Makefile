# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test install install-dev check-env clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Base install: what a user who only analyses images needs (no torch).
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e .
	touch $@

# Development install: training (torch==2.13.0 CPU), web and test extras.
$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[train,web,dist,test]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# CI must never carry torchvision or CUDA wheels.
check-env: $(VENV)/.installed-dev
	@if $(BIN)/python -m pip list 2>/dev/null | grep -iE '^(torchvision|nvidia-)' ; then \
	  echo "error: torchvision or nvidia-* packages are installed in $(VENV)"; exit 1; fi

# The bundled real AFM file plus a small synthetic STM set made on the spot.
demo: $(VENV)/.installed
	rm -rf demo-out demo-input
	$(BIN)/particlesnn synth --n 3 --preset stm-sparse --size 256 --seed 1 --out demo-input/synthetic
	$(BIN)/particlesnn analyze examples --out demo-out/example
	$(BIN)/particlesnn analyze "demo-input/synthetic/images/*.gsf" --out demo-out/synthetic
	@echo "Open demo-out/example/report.html and demo-out/synthetic/report.html"

test: check-env
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) demo-out demo-input
