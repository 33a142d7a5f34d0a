"""Everything the Lambda needs besides ``app.py``: request parsing, model
loading and the prediction service. Importable and testable without Chalice."""
