"""Running the model: choosing ONNX Runtime or scikit-learn for a model
directory, each runtime, the S3 artifact download, the load-once holder
the protocols call, and the JSON of its answers (``answer_json``). Imports
the layers below (http, schema, safeload)."""
