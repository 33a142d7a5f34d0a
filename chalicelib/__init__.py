"""Everything the Lambda needs besides ``app.py``, importable and testable
without Chalice. Layers, bottom up; each imports only the ones before it in
this list (``tests/test_layers.py`` holds the code to it):

* :mod:`.http`       the stage's configuration, replies, errors and their statuses (stdlib only)
* :mod:`.schema`     the model card, the typed feature schema, one parser per body format
* :mod:`.safeload`   loading an untrusted pickle: unpickler rules, budgets, native-state checks, audit
* :mod:`.runtimes`   ONNX Runtime or scikit-learn, the S3 artifact, the load-once model holder
* :mod:`.ops`        the request log line and its metrics, tracing, SnapStart, lazy imports
* :mod:`.page`       the try-it page and the OpenAPI document
* :mod:`.protocols`  ``/model`` and the peers' protocols, each through one wrapper: decode, infer, encode
* :mod:`.batch`      batch transform of S3 objects over SQS, with the endpoint's model and parsers
"""
