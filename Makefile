# One command to try it, one to test it: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCAL_DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: install demo test dev

$(BIN)/batch-pipeline: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/batch-pipeline

$(LOCAL_DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(LOCAL_DAGSTER_HOME)
	cp dagster.yaml $@

demo: install $(LOCAL_DAGSTER_HOME)/dagster.yaml
	DAGSTER_HOME=$(LOCAL_DAGSTER_HOME) $(BIN)/dagster job execute -m batch_pipeline.definitions \
		-j document_batch_job -c examples/compliance_local.yaml
	@echo "Reports: $(LOCAL_DAGSTER_HOME)/batch_pipeline/reports/<run id>/summary.md"

test: install
	$(BIN)/pytest

dev: install $(LOCAL_DAGSTER_HOME)/dagster.yaml
	DAGSTER_HOME=$(LOCAL_DAGSTER_HOME) $(BIN)/dagster dev -w workspace.yaml
