# The verbs a user types. Everything runs in .venv on Python 3.12, the Lambda
# runtime Chalice targets (it follows the Python that runs it).
# The first python3.12 that really runs (a pyenv shim may exist but refuse).
PY312 := $(shell for p in python3.12 $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { command -v $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: setup serve test docs model build package deploy harden bench batch clean api-key api-key-list api-key-revoke
OUT ?= dist/prod
# What Chalice cannot configure (SnapStart, alias, gradual deployment, alarms).
MERGE ?= build/merge-prod.json
NAME ?=
MODEL ?=
API_ID ?=
KEYS := $(BIN)/python -m tools.ops.api_keys$(if $(API_ID), --rest-api-id $(API_ID))

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -n "$(PY312)" || { echo "error: Python 3.12 not found (pyenv install 3.12, or put python3.12 on PATH)" >&2; exit 1; }
	test -x $(BIN)/python || $(PY312) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

serve: setup  ## [MODEL=name] serve model/NAME (default the dev stage's: model/iris) at http://127.0.0.1:$(PORT)/model (try-it page: /) with chalice local
ifneq ($(MODEL),)
	@test -f model/$(MODEL)/model.json || { echo "error: no model/$(MODEL)/model.json (python -m publisher.publish ... --name $(MODEL))" >&2; exit 1; }
	@$(BIN)/python -c 'import json,sys; c=json.load(open(".chalice/config.json")); sys.exit("error: the dev stage sets MODEL_DIR in .chalice/config.json, which would win over MODEL=$(MODEL)" if "MODEL_DIR" in {**c.get("environment_variables",{}), **c["stages"]["dev"].get("environment_variables",{})} else 0)'
endif
	$(if $(MODEL),MODEL_DIR=model/$(MODEL) )$(BIN)/chalice local --host 127.0.0.1 --port $(PORT)

test: setup  ## the test suite
	$(BIN)/python -m pytest -q

docs: setup  ## build the docs site (mkdocs.yml, docs/) into build/site; --strict: a broken link or anchor fails
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

model: setup  ## rebuild the bundled demo model in model/iris (byte-identical artifact); other models untouched
	$(BIN)/python -m publisher.train

build: setup  ## trimmed Lambda package (deps + app + model) into Chalice's cache
	$(BIN)/python -m tools.build.package --stage prod

package: build  ## deployment.zip + SAM template (deploy/merge-prod.json + every route on the live alias) in $(OUT); must reuse the build
	rm -rf $(OUT)
	$(BIN)/python -m tools.ops.merge_template deploy/merge-prod.json $(MERGE)
	@out=$$($(BIN)/chalice package --stage prod --merge-template $(MERGE) $(OUT) 2>&1); s=$$?; echo "$$out"; \
	  test $$s -eq 0 && echo "$$out" | grep -q "Reusing existing deployment package" || \
	  { echo "error: chalice did not reuse the build (app.py, chalicelib/, vendor/ or requirements.txt changed after make build?)" >&2; exit 1; }

deploy: setup  ## make build (refusing a package over the 50 MiB direct upload) + chalice deploy --stage prod
	$(BIN)/python -m tools.build.package --stage prod --direct-upload
	$(BIN)/chalice deploy --stage prod

api-key: setup  ## NAME=client [API_ID=id]: a key for the deployed prod stage (usage plan created once); printed once
	$(KEYS) create -- "$(NAME)"

api-key-list: setup  ## the prod stage's keys (names and ids, never values) and its usage plan
	$(KEYS) list

api-key-revoke: setup  ## NAME=client: delete that key
	$(KEYS) revoke -- "$(NAME)"

harden: setup  ## 10,000+ fuzz cases, hostile inputs, 100,000-request soak, malicious artifacts
	$(BIN)/python -m tools.harden

bench: setup  ## cold start (ONNX / scikit-learn path / old build / floor), imports, sizes, latency, batch, memory, Lambda init estimate -> build/bench.json
	$(BIN)/python -m tools.bench $(if $(QUICK),--quick) $(if $(MODELS),--models $(MODELS)) --json build/bench.json

batch: setup  ## FILE=path|s3://bucket/key [OUTPUT=jsonl] [PROBABILITIES=1] [JOIN=1]: a batch job on the stage's BATCH_BUCKET, followed, downloaded
	@test -n "$(FILE)" || { echo "error: FILE=path or FILE=s3://bucket/key" >&2; exit 1; }
	$(BIN)/python -m tools.ops.batch submit "$(FILE)" --wait$(if $(OUTPUT), --output $(OUTPUT))$(if $(PROBABILITIES), --probabilities)$(if $(JOIN), --join)

clean:
	rm -rf build dist .pytest_cache .chalice/deployments
