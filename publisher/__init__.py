"""Build time, never shipped: how a model directory is made. ``publish``
turns a user's estimator into a model directory (``model.joblib``,
``model.json``, ``model.onnx`` when it compiles and agrees), auditing it and
inferring its schema; ``train`` rebuilds the bundled demo model."""
