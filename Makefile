# Two entry points, both idempotent: `make demo` and `make test`.
# torch is installed first from its CPU wheel so that no multi-GB CUDA build is pulled in.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup ros1 demo test lint bench clean

$(STAMP): setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian's ROS 1 (rospy), where installed, made importable from the venv (idempotent, quick).
ros1: $(STAMP)
	VENV=$(VENV) scripts/setup_ros1.sh

setup: $(STAMP) ros1

demo: $(STAMP)
	$(BIN)/embodied demo

test: $(STAMP) ros1
	$(BIN)/python -m pytest -q -n 2 tests

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/foundation.py

clean:
	rm -rf $(VENV) build *.egg-info
