"""The server's own name and version, as the peers' identity routes answer
them (MLflow's ``GET /version``, the Open Inference ``GET /v2``): the
served model's name and version are the card's, answered elsewhere."""
SERVER_NAME = "sklearn-serverless"
SERVER_VERSION = "1"
