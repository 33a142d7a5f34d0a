"""The Lambda deployment package: ``python -m tools.build.package`` (``make
build``) and its steps, one module each (Chalice's view of the project, the
wheels, the model, the traced requests, lazy imports, trimming, assembly).

Owns everything that decides what ships. Imports ``chalicelib`` only for the
app's own rules (the card, the runtime choice) and ``tools.ops`` for the
events and the model's S3 grant; never ``tools.bench`` or ``tools.harden``.
"""
