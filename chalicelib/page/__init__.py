"""What a person reads: the try-it page and the OpenAPI document, both
generated from the model card once per process, never on the prediction
path."""
