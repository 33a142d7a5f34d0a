"""Everything the Lambda needs besides ``app.py``, importable and testable
without Chalice. Layers, bottom up; each imports only the ones above it in
this list:

* :mod:`.http`       replies, errors and their statuses, the stage's access settings (stdlib only)
* :mod:`.schema`     the model card, the typed feature schema, one parser per body format
* :mod:`.safeload`   loading an untrusted pickle: unpickler rules, budgets, native-state checks, audit
* :mod:`.runtimes`   ONNX Runtime or scikit-learn, the S3 artifact, the load-once model holder
* :mod:`.protocols`  ``/model`` and the peers' protocols: decode, infer, encode, errors per protocol
* :mod:`.page`, :mod:`.ops`  the try-it page and OpenAPI; metrics, tracing, SnapStart, lazy imports
"""
