# kdsuite: `make demo` and `make test` each set up .venv first (torch/torchvision from the registry).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kdsuite-installed

.PHONY: install demo test test-extended test-fast docs slurm-install latex-install bench clean

$(STAMP): pyproject.toml examples/kdsuite-mse-kd/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	$(PY) -m pip install --no-build-isolation --no-deps -e examples/kdsuite-mse-kd
	touch $(STAMP)

install: $(STAMP)

# the main job: a small taxonomy grid on the embedded digits data, ending in a comparison table
demo: install
	$(VENV)/bin/kdsuite demo

slurm-install:
	bash slurm/local_cluster.sh install

# pdflatex for tests/test_latex_compile.py (the generated tables compiled one- and two-column): Debian's
# texlive-latex-base + texlive-latex-recommended (booktabs) and poppler-utils (pdftoppm); ~40 s, ~90 MB
latex-install:
	command -v pdflatex >/dev/null && kpsewhich booktabs.sty >/dev/null || \
		{ apt-get update && apt-get install -y --no-install-recommends texlive-latex-base \
		  texlive-latex-recommended poppler-utils; }

# the documentation site (docs/, mkdocs.yml) into site/; --strict fails on a broken link or anchor
docs: install
	$(VENV)/bin/mkdocs build --strict --site-dir site

# the whole suite; the Slurm tests start (and stop) a real one-node cluster on localhost
# --durations: the slowest tests are named in every CI log (the suite's budget is 25 min on 2 idle cores)
test: install slurm-install latex-install docs
	WANDB_MODE=disabled $(PY) -m pytest -q -ra -m "not extended" --durations=30

# what make test leaves out: every method on both cross-family pairs, VGG16's import (~0.5 GB)
test-extended: install
	WANDB_MODE=disabled $(PY) -m pytest -q -ra -m extended

test-fast: install
	WANDB_MODE=disabled $(PY) -m pytest -q -m "not slurm and not slow"

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs wandb .pytest_cache site
