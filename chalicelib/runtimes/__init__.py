"""Running the model: choosing ONNX Runtime or scikit-learn for a model
directory, each runtime, the S3 artifact download, and the load-once holder
the protocols call. Imports the layers below (http, schema, safeload)."""
