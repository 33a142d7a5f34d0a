"""The peers' protocols, spoken by the app for clients written for them.

One module per protocol translates that protocol's request into the app's
own request model (the JSON payload shapes of ``POST /model``, as Python
objects, parsed by :func:`chalicelib.schema.parsing.parse_payload`, so every check
and every typed schema of the card applies unchanged), runs the served
model, and writes the answer and the errors in the protocol's shape:

* :mod:`.mlflow`          MLflow's scoring server (``/invocations``, ``/ping``, ``/version``)
* :mod:`.sagemaker`       SageMaker's container contract (``/invocations``: CSV, JSON rows, NPY)
* :mod:`.invocations`     the rule deciding which of the two reads an ``/invocations`` body
* :mod:`.kserve_v1`       KServe's V1 protocol (``/v1/models/...``)
* :mod:`.open_inference`  the Open Inference Protocol, KServe V2 (``/v2/...``)

:mod:`.common` holds what they share; errors are rendered in one place,
:func:`.wrapper.render_error`, and every request runs through
:func:`.wrapper.handle`.
"""
