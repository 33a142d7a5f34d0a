"""What a request must hold: the model card (data only), the typed feature
schema it describes, and one parser per body format (JSON, CSV) that turns a
body into a checked feature matrix. Imports :mod:`chalicelib.http`."""
