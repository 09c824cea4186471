# One command to try it, one to test it: `make demo`, `make test`.
# Installs come from requirements.lock (`make lock` refreshes it), so what you run is what was tested.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements.lock
PIP_INSTALL := $(BIN)/pip install --quiet --constraint $(LOCK)
LOCAL_DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: install demo test test-fast lint format dev lock docs
.DELETE_ON_ERROR:

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip

# The runtime alone: what `pip install batch_pipeline` gives a user; no compiler needed.
$(VENV)/.runtime: pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP_INSTALL) -e .
	touch $@

# Everything the suite needs: the test tools, the real model server (llama-cpp-python is built
# from source; native builds crashed here, hence GGML_NATIVE=OFF) and the benchmark's plot.
$(VENV)/.test: pyproject.toml $(LOCK) | $(BIN)/python
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PIP_INSTALL) -e ".[test,real-llm,bench,docs]"
	touch $@ $(VENV)/.runtime

$(VENV)/.dev: pyproject.toml $(LOCK) | $(BIN)/python
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PIP_INSTALL) -e ".[dev]"
	touch $@ $(VENV)/.test $(VENV)/.runtime

install: $(VENV)/.runtime

# The local instance: dagster.yaml copied in (again only when it changes), then its storage
# created once, under a lock, before anything launches runs in it.
$(LOCAL_DAGSTER_HOME)/dagster.yaml: dagster.yaml | $(VENV)/.runtime
	mkdir -p $(LOCAL_DAGSTER_HOME) && cp dagster.yaml $@
	DAGSTER_HOME=$(LOCAL_DAGSTER_HOME) $(BIN)/batch-pipeline init

demo: $(VENV)/.runtime $(LOCAL_DAGSTER_HOME)/dagster.yaml
	DAGSTER_HOME=$(LOCAL_DAGSTER_HOME) $(BIN)/dagster job execute -m batch_pipeline.definitions \
		-j document_batch_job -c examples/compliance_local.yaml
	@echo "Reports: $(LOCAL_DAGSTER_HOME)/batch_pipeline/reports/<run id>/summary.md"

# Four xdist workers on two cores: most of the suite waits on processes and services. Tests that
# share a module- or session-wide service carry an xdist_group, so one worker starts it once.
test: $(VENV)/.test
	$(BIN)/pytest -n 4 --dist loadgroup

# The edit-test loop: no service, no subprocess, no job run (batch_pipeline_tests/conftest.py says which).
test-fast: $(VENV)/.test
	$(BIN)/pytest -q -m "not slow and not real_llm"

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The docs site into site/, strictly: a broken link, a missing page or a failing reference generator
# fails. MkDocs 1.x (held below 2, which drops its plugins); its notice about 2.0 is silenced.
docs: $(VENV)/.test
	DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict --quiet

# Started inside the instance folder, so the dagster.yaml Dagster reads is the one it finds there
# (from the repository root it warns about the template beside workspace.yaml); relative sources
# (examples/docs) still resolve from the repository root. `dagster dev`, not
# `dg dev`: dg changes into the project folder (the same warning) and needs dagster-dg-cli in the
# runtime; its "superseded by dg dev" notice is filtered by message, as is a BetaWarning Dagster
# raises from its own SensorDefinition.with_attributes (it passes `owners` to itself).
# The reports folder is served on 127.0.0.1:$(REPORTS_PORT) while the UI runs, so each run's
# report.html opens from its asset page (a browser opens no file:// link from a web page).
REPORTS_PORT ?= 3070
dev: $(VENV)/.runtime $(LOCAL_DAGSTER_HOME)/dagster.yaml
	mkdir -p $(LOCAL_DAGSTER_HOME)/batch_pipeline/reports
	cd $(LOCAL_DAGSTER_HOME) && { \
		$(CURDIR)/$(BIN)/python -m http.server $(REPORTS_PORT) --bind 127.0.0.1 \
			--directory $(LOCAL_DAGSTER_HOME)/batch_pipeline/reports > /dev/null 2>&1 & \
		trap 'kill $$!' EXIT; \
		DAGSTER_HOME=$(LOCAL_DAGSTER_HOME) BATCH_PIPELINE_SOURCE_ROOT=$(CURDIR) \
		BATCH_PIPELINE_REPORTS_URL=http://127.0.0.1:$(REPORTS_PORT)/ \
		PYTHONWARNINGS='ignore:Function `dev_command` is superseded,ignore:Parameter `owners` of initializer' \
		$(CURDIR)/$(BIN)/dagster dev -w $(CURDIR)/workspace.yaml $(DEV_ARGS); }

# Re-resolve every dependency (all extras, every platform) to its newest allowed release.
lock: $(VENV)/.dev
	$(BIN)/uv pip compile pyproject.toml --all-extras --universal --upgrade --no-header \
		--annotation-style line --output-file $(LOCK)
