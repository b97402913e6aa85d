# The README's two commands: `make lab` opens the lab, `make test` passes every test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
JUPYTER_ARGS ?=
PYTEST_ARGS  ?=

.PHONY: lab test checkpoint checkpoint-mask notebook-runs notebook-outputs assignments colab-links mutate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# A stamp per extra: re-installs only when pyproject.toml changes.
$(VENV)/.lab-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e ".[lab]"
	touch $@

# The test install adds Colab's ipywidgets 7.7.1 in a folder of its own (no second torch): tests/test_colab.py runs
# the widget tests under it too, with that folder first on the path.
WIDGETS_7 := $(VENV)/overlays/ipywidgets-7.7.1
$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e ".[test]"
	$(BIN)/python -m pip install -q --upgrade --no-deps --target $(WIDGETS_7) ipywidgets==7.7.1 ipython_genutils==0.2.0
	touch $@

# Jupyter refuses to run as root (containers, some lab machines) unless told it may.
AS_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

# fpnlab.teaching.jupyter_setup: JupyterLab starts without the news pop-up, and nbstripout becomes this checkout's
# git filter: running the notebooks never changes what git diff or a commit sees (your outputs stay in your files).
lab: $(VENV)/.lab-installed
	$(BIN)/python -m fpnlab.teaching.jupyter_setup
	$(BIN)/jupyter lab --notebook-dir=notebooks $(AS_ROOT) $(JUPYTER_ARGS)

# Format and lint first (ruff, configured in pyproject.toml): seconds, and a failure names the file and line.
test: $(VENV)/.test-installed
	$(BIN)/ruff format --check --quiet .
	$(BIN)/ruff check --quiet .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The shipped demo detector data/checkpoints/demo.pt: the demo preset trained on shapes-mini (CPU, ~10 min on
# 2 cores), exported in float16, then scored on shapes-mini val; figures in results/demo_training.json and
# demo_checkpoint.json.
checkpoint: $(VENV)/.test-installed
	$(BIN)/python -m fpnlab train --preset demo --run-dir runs/demo --export data/checkpoints/demo.pt --result demo_training --no-progress
	$(BIN)/python -m fpnlab eval --checkpoint data/checkpoints/demo.pt --proposals --levels --result demo_checkpoint --no-progress

# The shipped Mask R-CNN data/checkpoints/demo_mask.pt (notebook 09): the demo_mask preset (the demo detector with
# the mask head) trained on shapes-mini, exported in float16, scored for boxes and masks; figures in
# results/demo_mask_training.json and demo_mask_checkpoint.json.
checkpoint-mask: $(VENV)/.test-installed
	$(BIN)/python -m fpnlab train --preset demo_mask --run-dir runs/demo_mask --export data/checkpoints/demo_mask.pt --result demo_mask_training --no-progress
	$(BIN)/python -m fpnlab eval --checkpoint data/checkpoints/demo_mask.pt --result demo_mask_checkpoint --no-progress

# The runs notebooks 07 and 08 start, with their default settings, stored for the notebooks to compare with
# (results/notebook07_default.json, notebook08_rerun.json, notebook08_rerun_1x.json): about 12 minutes on 2 cores.
notebook-runs: $(VENV)/.test-installed
	$(BIN)/python -m fpnlab.teaching.notebook_runs 07
	$(BIN)/python -m fpnlab.teaching.notebook_runs 08
	$(BIN)/python -m fpnlab.teaching.notebook_runs 08-table3

# The expected text of the notebooks' checked cells (notebooks/expected/), after changing one of them.
notebook-outputs: $(VENV)/.test-installed
	$(BIN)/python tests/notebook_outputs.py notebooks/*.ipynb

# The graded assignment: student release, autograder, Gradescope zip and instructor folder under dist/
# (assignments/README.md). SECRET seeds the hidden cases: `make assignments SECRET=...`; keep it private.
assignments: $(VENV)/.test-installed
	SECRET="$(SECRET)" $(BIN)/python -m assignments.build --out dist

# The one repository setting (pyproject.toml's [project.urls] Repository): make colab-links REPO=owner/name [BRANCH=main]
# sets it and rewrites the README's Colab links and every notebook's install cell from it; with no REPO, from the
# setting as it is.
colab-links: $(VENV)/.test-installed
	$(BIN)/python tools/colab_links.py $(if $(REPO),--repo $(REPO)) $(if $(BRANCH),--branch $(BRANCH))

# Mutation testing, one module against its own tests (not part of `make test`): make mutate MODULE=model/levels
mutate: $(VENV)/.test-installed
	$(BIN)/python -m pip install -q "mutmut>=3.3,<4"
	$(BIN)/python tools/mutate.py $(MODULE)

clean:
	rm -rf $(VENV) build *.egg-info
