# Two commands do all set-up on a fresh machine:
#   make demo   the mini recipe end to end (synthesise, prepare, train, decode, WER, export, RTF)
#   make test   the C++ runtime, its unit tests (ctest) and the Python test suite without the
#               tests marked heavy (~16 min on 2 cores)
#   make test-all  the same with every test (~35 min on 2 cores; what CI runs)
#   make runtime  the C++ runtime only (runtime/build)
#   make serve  the WebSocket server on the demo's exported model (after make demo)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
APT_PACKAGES := flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts espeak-ng \
	sox ffmpeg asterisk-core-sounds-en asterisk-core-sounds-en-wav asterisk-core-sounds-en-g722 \
	libgflags-dev libboost-dev nlohmann-json3-dev
PYTEST_ARGS ?=
# pytest-xdist workers for make test; 0 (the default) runs the tests in-process. On 2 cores two
# workers gained little (33 vs 35 min): the runtime tests share session exports and run as one
# group on one worker, which is the whole run's critical path.
TEST_JOBS ?= 0
# the pytest -m expression of make test; make test-all empties it (every test)
TEST_MARKERS ?= not heavy

.PHONY: demo test test-all setup system-deps lint clean-venv runtime serve gpu-wheels gpu-data gpu-check

$(PY):
	python3 -m venv $(VENV)

# Reinstall when the requirements change. deepspeed builds from an sdist whose setup imports
# torch, so it is installed without build isolation against the CPU torch pinned above.
$(STAMP): requirements.txt requirements-deepspeed.txt pyproject.toml | $(PY)
	$(PIP) install -q -r requirements.txt
	DS_BUILD_OPS=0 $(PIP) install -q --no-build-isolation -r requirements-deepspeed.txt
	$(PIP) install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP) system-deps

# TTS engines, sox/ffmpeg, the real-speech test prompts and gflags (the C++ runtime binaries'
# flags) come from Debian packages.
system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing system packages; run as root:"; \
	    echo "  sudo apt-get update && sudo apt-get install -y $$missing"; exit 1; \
	  fi; \
	fi

# The C++ runtime (CMake, libtorch from the torch wheel, pybind11 module): runtime/build.
runtime: $(STAMP)
	PYTHON=$(abspath $(PY)) runtime/build.sh
	cd runtime/build && PATH=$(abspath $(VENV))/bin:$$PATH ctest --output-on-failure

demo: setup runtime
	cd recipes/mini/s0 && ./run.sh

# The WebSocket server (WeNet's protocol, docs/runtime.md) on the model that the demo's stage 6
# exports; stream to it with python -m wenet_eff.bin.stream_client --url ws://127.0.0.1:$(PORT).
SERVE_MODEL ?= recipes/mini/s0/exp/mini_moe/runtime_fp32
PORT ?= 10086
serve: $(STAMP)
	@if [ ! -f $(SERVE_MODEL)/meta.json ]; then \
	  echo "$(SERVE_MODEL) is not exported yet: run make demo (its stage 6 exports it), or" \
	    "make serve SERVE_MODEL=DIR with a directory of python -m wenet_eff.bin.export" >&2; \
	  exit 1; \
	fi
	@PYTHON=$(abspath $(PY)) runtime/build.sh
	runtime/build/websocket_server_main --model_dir $(SERVE_MODEL) --port $(PORT)

# pytest exits 5 when it collected (or selected) no test: that is a failure, not a pass.
test: setup runtime
	@OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_JOBS) --dist loadgroup -m "$(TEST_MARKERS)" \
	  $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest selected no tests (-m \"$(TEST_MARKERS)\";" \
	  "make test-all runs the heavy ones)" >&2; exit 1; fi; exit $$rc

test-all:
	@$(MAKE) --no-print-directory test TEST_MARKERS=

# ruff, and the import contracts of pyproject.toml (imports point one way: bin > ... > nn)
lint: $(STAMP)
	$(VENV)/bin/ruff check wenet_eff tools tests recipes
	$(VENV)/bin/ruff format --check wenet_eff tools tests recipes
	$(VENV)/bin/lint-imports --no-cache --no-logo

clean-venv:
	rm -rf $(VENV)

# The GPU check (docs/gpu.md). Here: gpu-wheels downloads what the GPU image lacks as Python
# 3.12 manylinux wheels into .whl/ (pure-Python sdists built into wheels), at this venv's
# versions (requirements.txt's pins and their dependencies); gpu-data synthesises the corpus
# the check trains on into .gpu_data/. The device call carries both and runs gpu-check there.
GPU_WHEELS := hydra-core omegaconf antlr4-python3-runtime kaldi-native-fbank soundfile cffi \
	pycparser soxr jiwer rapidfuzz
GPU_PLATFORM := --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
	--platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
	--platform manylinux2014_x86_64 --platform manylinux1_x86_64

gpu-wheels: $(STAMP)
	rm -rf .whl && mkdir -p .whl
	@set -e; for name in $(GPU_WHEELS); do \
	  pin=$$name==$$($(PIP) show $$name | sed -n 's/^Version: //p'); \
	  $(PIP) download -q --no-deps --only-binary=:all: $(GPU_PLATFORM) -d .whl $$pin 2>/dev/null \
	    || $(PIP) wheel -q --no-deps -w .whl $$pin; \
	done
	@if ls .whl | grep -v -e '-cp312-' -e '-abi3-' -e '-py3-none-any' -e '-py2.py3-none-'; then \
	  echo "gpu-wheels: the wheels above do not install on CPython 3.12" >&2; exit 1; fi
	@ls .whl; du -sh .whl

gpu-data: $(STAMP)
	$(PY) tools/gpu_data.py .gpu_data

gpu-check:
	@PYTHON=$$([ -x $(PY) ] && echo $(PY) || echo python3) bash tools/gpu_check.sh
