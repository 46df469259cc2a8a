# Two commands for a newcomer: `make demo` and `make test`.
# Both create .venv and install convdrop into it (with constraints.txt) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml setup.py constraints.txt src/convdrop/ops/_kernel.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[lab,vision,ray,optuna,dev,keras,lightning]'
	touch $(STAMP)

install: $(STAMP)

# The README's demo table comes from results/regularizers/report.md; its figures are
# copied here, and docs/masks.png redrawn, so a rerun refreshes every picture it shows.
demo: $(STAMP)
	$(BIN)/convdrop compare
	cp results/regularizers/learning_curves.png results/regularizers/accuracy.png docs/
	$(BIN)/convdrop masks --out docs/masks.png

test: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/convdrop bench

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
