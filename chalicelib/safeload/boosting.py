"""xgboost and lightgbm through their scikit-learn API, when installed.

They are opt-in: a user who serves an ``XGBClassifier`` or ``LGBMClassifier``
pins ``xgboost-cpu`` or ``lightgbm`` in ``requirements.txt`` (docs/bring-your-own-model.md,
xgboost and lightgbm). This module is an extra rule of the restricted unpickler
(:data:`chalicelib.safeload.safe_pickle.EXTRA_RULES`) that allows exactly the globals
their fitted sklearn-API estimators pickle to, found by dumping each of the
classes below fitted on iris and recording every global the unpickler asked
for, and only when the library is installed: nothing is imported for a
library that is not (``importlib.util.find_spec`` first).

Their OpenMP thread pool follows ``OMP_NUM_THREADS`` (1 in every stage's
config, like BLAS's): both libraries size it from OpenMP's default when the
estimator's ``n_jobs`` is unset.
"""
import importlib
import importlib.util

from chalicelib.safeload import safe_pickle

#: library -> the globals its sklearn-API estimators need.
LIBRARY_GLOBALS = {
    "xgboost": frozenset({
        ("xgboost.sklearn", "XGBClassifier"),
        ("xgboost.sklearn", "XGBRegressor"),
        ("xgboost.sklearn", "XGBRanker"),
        ("xgboost.sklearn", "XGBRFClassifier"),
        ("xgboost.sklearn", "XGBRFRegressor"),
        ("xgboost.core", "Booster"),         # its state: the model as bytes
    }),
    "lightgbm": frozenset({
        ("lightgbm.sklearn", "LGBMClassifier"),
        ("lightgbm.sklearn", "LGBMRegressor"),
        ("lightgbm.sklearn", "LGBMRanker"),
        ("lightgbm.basic", "Booster"),       # its state: the model as text
        ("collections", "defaultdict"),      # Booster bookkeeping; the factory is checked too
    }),
}

_installed = {}


def installed(library):
    if library not in _installed:
        _installed[library] = importlib.util.find_spec(library) is not None
    return _installed[library]


def resolve(module, name):
    """The class ``module.name`` if an installed library's estimator needs it."""
    for library, allowed in LIBRARY_GLOBALS.items():
        if (module, name) in allowed and installed(library):
            return vars(importlib.import_module(module))[name]
    return None


safe_pickle.EXTRA_RULES.append(resolve)
