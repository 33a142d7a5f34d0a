# The verbs a user types (`make` alone lists them). Everything runs in .venv
# on Python 3.12, the Lambda runtime Chalice targets (it follows the Python
# that runs it). Each verb installs only what it needs, once: the runtime and
# Chalice to serve and build, the publisher's compiler to publish, the whole
# dev/test toolchain (requirements-dev.txt) to test, bench and harden.
# The first python3.12 that really runs (a pyenv shim may exist but refuse).
PY312 := $(shell for p in python3.12 $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { command -v $$p; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
export AWS_DEFAULT_REGION ?= us-east-1
.DEFAULT_GOAL := help

.PHONY: help setup serve publish publish-usage test test-all docs model build package deploy harden bench batch clean \
	api-key api-key-list api-key-revoke
OUT ?= dist/prod
# What Chalice cannot configure (SnapStart, alias, gradual deployment, alarms).
MERGE ?= build/merge-prod.json
NAME ?=
MODEL ?=
API_ID ?=
KEYS := $(BIN)/python -m tools.ops.api_keys$(if $(API_ID), --rest-api-id $(API_ID))
# The fast tier: no Lambda package build, browser, AWS emulator or slow test
# (markers: pyproject.toml; which tests carry them: tests/conftest.py).
FAST := not package and not browser and not aws and not slow

# ---------------------------------------------------------------------------
# What each verb installs: one stamp per level, remade when a requirements
# file changes. pip's own progress stays visible.
STAMP := $(VENV)/.installed
# $(call pins,NAME ...): those packages' pins, as requirements-dev.txt writes them
pins = $(foreach n,$(1),$(shell grep -m1 -iE '^$(n)(\[[^]]*\])?==' requirements-dev.txt))
# $(call install,WHAT,PIP ARGUMENTS)
define install
	@echo "==> installing $(1) into $(VENV)/"
	$(BIN)/python -m pip install --disable-pip-version-check $(2)
	@touch $@
	@echo "==> $(1): installed ($$(du -sh $(VENV) 2>/dev/null | cut -f1) in $(VENV)/)"
endef

$(BIN)/python:
	@test -n "$(PY312)" || { echo "error: Python 3.12 not found (pyenv install 3.12, or put python3.12 on PATH)" >&2; exit 1; }
	@echo "==> creating $(VENV)/ with $(PY312)"
	$(PY312) -m venv $(VENV)

$(STAMP)-serve: requirements.txt requirements-dev.txt | $(BIN)/python
	$(call install,the runtime (requirements.txt) and Chalice,-r requirements.txt $(call pins,chalice))

$(STAMP)-publish: $(STAMP)-serve
	$(call install,the publisher's ONNX compiler,-r requirements.txt $(call pins,skl2onnx onnx))

$(STAMP)-ops: $(STAMP)-serve
	$(call install,boto3 (API keys, batch jobs),-r requirements.txt $(call pins,boto3))

$(STAMP)-docs: requirements-dev.txt | $(BIN)/python
	$(call install,mkdocs (the docs site),$(call pins,mkdocs mkdocs-material))

$(STAMP)-dev: $(STAMP)-serve
	$(call install,the dev/test toolchain (requirements-dev.txt: test clients, moto, Playwright; ~1.4 GB the first time),-r requirements-dev.txt)

# ---------------------------------------------------------------------------

help:  ## this list
	@echo "usage: make VERB   (each verb sets up $(VENV)/ with what it needs)"
	@awk -F':.*##' '/^[a-z][a-zA-Z_-]*:.*##/ { gsub(/\$$\(PORT\)/, "$(PORT)", $$2); gsub(/\$$\(OUT\)/, "$(OUT)", $$2); \
	  printf "  make %-15s%s\n", $$1, $$2 }' $(firstword $(MAKEFILE_LIST))

setup: $(STAMP)-dev  ## install everything (requirements-dev.txt) without running anything

serve: $(STAMP)-serve  ## [MODEL=name] [PORT=$(PORT)] serve model/NAME (default model/iris) at http://127.0.0.1:$(PORT)/model (try-it page: /) with chalice local
ifneq ($(MODEL),)
	@test -f model/$(MODEL)/model.json || { echo "error: no model/$(MODEL)/model.json (make publish FILE=my.joblib NAME=$(MODEL) VERSION=1.0.0)" >&2; exit 1; }
	@$(BIN)/python -c 'import json,sys; c=json.load(open(".chalice/config.json")); sys.exit("error: the dev stage sets MODEL_DIR in .chalice/config.json, which would win over MODEL=$(MODEL)" if "MODEL_DIR" in {**c.get("environment_variables",{}), **c["stages"]["dev"].get("environment_variables",{})} else 0)'
endif
	@echo "==> chalice local: http://127.0.0.1:$(PORT)/ (the try-it page), POST /model; one line per request below; Ctrl-C stops (and restarts, after a change or a publish: no autoreload)"
# No autoreload: with watchdog installed (mkdocs brings it), Chalice restarts on
# any file event under the project, a read included, so it would never serve.
	$(if $(MODEL),MODEL_DIR=model/$(MODEL) )$(BIN)/chalice local --no-autoreload --host 127.0.0.1 --port $(PORT)

# Without FILE the usage is the answer, before anything is installed.
publish: $(if $(FILE),$(STAMP)-publish,publish-usage)  ## FILE=my.joblib NAME=churn VERSION=1.0.0 [SAMPLE=train_head.csv] [ARGS='--metrics ...']: publish your model into model/NAME, compiled to ONNX where it agrees
	$(BIN)/python -m publisher.publish "$(FILE)"$(if $(NAME), --name "$(NAME)")$(if $(VERSION), --version "$(VERSION)")$(if $(SAMPLE), --sample "$(SAMPLE)") $(ARGS)

publish-usage:
	@echo "error: make publish FILE=my.joblib NAME=churn VERSION=1.0.0 [SAMPLE=train_head.csv] [ARGS='--metrics {...}'] (every option: .venv/bin/python -m publisher.publish --help)" >&2; exit 1

test: $(STAMP)-dev  ## the fast tests: no package build, browser or AWS emulator (about 85 s of CPU in two workers: under a minute on 2 cores)
	$(BIN)/python -m pytest -q -m "$(FAST)" -n 2

test-all: $(STAMP)-dev  ## every test, what CI runs (two workers: 16-19 min on 2 cores; CI=1: no skipping the browser)
	$(BIN)/python -m pytest -q -n 2

docs: $(STAMP)-docs  ## build the docs site (mkdocs.yml, docs/) into build/site/; --strict: a broken link or anchor fails
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site
	@echo "==> the docs site is in build/site/ (open build/site/index.html)"

model: $(STAMP)-publish  ## rebuild the bundled demo model (byte-identical artifact) into model/iris; other models untouched
	@echo "==> training and publishing the bundled model into model/"
	$(BIN)/python -m publisher.train

build: $(STAMP)-serve  ## trimmed Lambda package (deps + app + model) into Chalice's cache; over 50 MiB zipped: a function zip + a layer zip (automatic_layer)
	@echo "==> building the Lambda package (1-4 minutes; wheels cached in build/wheels/)"
	$(BIN)/python -m tools.build.package --stage prod

package: build  ## deployment.zip (+ layer-deployment.zip when split) + SAM template (with deploy/merge-prod.json) in $(OUT)/, from the build
	rm -rf $(OUT)
	$(BIN)/python -m tools.ops.merge_template deploy/merge-prod.json $(MERGE)
	@echo "==> chalice package --stage prod into $(OUT)/"
	@out=$$($(BIN)/chalice package --stage prod --merge-template $(MERGE) $(OUT) 2>&1); s=$$?; echo "$$out"; \
	  test $$s -eq 0 && { echo "$$out" | grep -q "Reusing existing deployment package" || \
	    { echo "$$out" | grep -q "Reusing existing app deployment package" && \
	      echo "$$out" | grep -q "Reusing existing shared layer deployment package"; }; } || \
	  { echo "error: chalice did not reuse the build (app.py, chalicelib/, vendor/, model/ or requirements.txt changed after make build?)" >&2; exit 1; }
	@echo "==> $(OUT)/:"
	@$(BIN)/python -m tools.build.layout $(OUT)
	@echo "    next: aws cloudformation package --template-file $(OUT)/sam.json --s3-bucket BUCKET --output-template-file $(OUT)/packaged.json"
	@echo "          aws cloudformation deploy --template-file $(OUT)/packaged.json --stack-name sklearn-serverless-prod --capabilities CAPABILITY_IAM"

deploy: $(STAMP)-serve  ## make build (refusing a zip over the 50 MiB direct upload) + chalice deploy --stage prod (publishes the layer too when split)
	@echo "==> building the Lambda package for a direct upload"
	$(BIN)/python -m tools.build.package --stage prod --direct-upload
	@echo "==> chalice deploy --stage prod"
	$(BIN)/chalice deploy --stage prod

api-key: $(STAMP)-ops  ## NAME=client [API_ID=id]: a key for the deployed prod stage (usage plan created once); printed once
	$(KEYS) create -- "$(NAME)"

api-key-list: $(STAMP)-ops  ## the prod stage's keys (names and ids, never values) and its usage plan
	$(KEYS) list

api-key-revoke: $(STAMP)-ops  ## NAME=client: delete that key
	$(KEYS) revoke -- "$(NAME)"

harden: $(STAMP)-dev  ## 10,000+ fuzz cases, hostile inputs, 100,000-request soak, malicious artifacts
	@echo "==> hardening run (several minutes; logs and figures in build/harden/)"
	$(BIN)/python -m tools.harden

bench: $(STAMP)-dev  ## cold start, imports, sizes, latency, memory, batch -> build/bench.json (QUICK=1 MODELS=... AGAINST=git-ref BATCH_MB=64, 0: no batch)
	@echo "==> benchmark (packages built once into build/bench/; figures to build/bench.json)"
	$(BIN)/python -m tools.bench $(if $(QUICK),--quick) $(if $(MODELS),--models $(MODELS)) $(if $(AGAINST),--against $(AGAINST)) --batch-mb $(or $(BATCH_MB),64) --json build/bench.json

batch: $(STAMP)-ops  ## FILE=path|s3://bucket/key [OUTPUT=jsonl] [PROBABILITIES=1] [JOIN=1]: a batch job on the stage's BATCH_BUCKET, followed, downloaded
	@test -n "$(FILE)" || { echo "error: FILE=path or FILE=s3://bucket/key" >&2; exit 1; }
	$(BIN)/python -m tools.ops.batch submit "$(FILE)" --wait$(if $(OUTPUT), --output $(OUTPUT))$(if $(PROBABILITIES), --probabilities)$(if $(JOIN), --join)

clean:  ## remove build/, dist/ and Chalice's package cache (not .venv/)
	rm -rf build dist .pytest_cache .chalice/deployments
