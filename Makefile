# hwbench: two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
CONSTRAINTS := constraints/ci.txt
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow bench clean

# This VM exposes no power counter (no RAPL, no NVML) and reports its CPU only as
# "Intel(R) Xeon(R) Processor", so energy can only be ESTIMATED from a TDP given by hand.
# Basis: a 2-vCPU slice of a Sapphire Rapids package, taking the Xeon Platinum 8480+
# (350 W, 112 hardware threads; Intel ARK) as the reference: 350 x 2/112 = 6.25 W.
# Records label it power_method=estimate-tdp. Override: make demo DEMO_TDP_W=...
DEMO_TDP_W ?= 6.25

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[cpu,test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/hwbench devices
	$(BIN)/hwbench profile resnet50 --out results --tdp-w $(DEMO_TDP_W)
	$(BIN)/hwbench frontier results

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
