"""Loading a model pickle that is not trusted: the unpickler's allowlist and
stream guard, the time and memory budgets, native-state validation of fitted
estimators, the publish-time audit, the user's shipped code and the boosting
libraries' rules. Imports :mod:`chalicelib.http` and :mod:`chalicelib.schema`."""
