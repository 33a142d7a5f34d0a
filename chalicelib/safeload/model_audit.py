"""What in a loaded model can read files, call functions or run code.

A scikit-learn model *is* a program: with only allowlisted classes,
``FunctionTransformer(numpy.positive, kw_args={"out": (paths,), ...})``
feeding ``CountVectorizer(input="filename")`` returns the bytes of
``/proc/self/environ`` in an ordinary prediction. No class allowlist can see
that; this module looks at the *values*. :func:`inspect_model` walks a
loaded estimator and returns findings; ``refused`` ones are what the app
and ``publisher.publish`` refuse unless trusted (``TRUST_MODEL_PICKLE=true`` /
``--trust``):

* ``file-input``: a text vectorizer with ``input="filename"`` or ``"file"``;
* ``callable``: a callable parameter run at prediction time (a vectorizer's
  ``analyzer``/``tokenizer``/``preprocessor``, ``FunctionTransformer`` and
  ``TransformedTargetRegressor`` functions, a callable kernel or metric),
  unless it is the class's own default, a numpy ufunc called without extra
  arguments, or a scikit-learn function;
* ``function-arguments``: ``kw_args``/``inv_kw_args`` (arguments handed to a
  function at prediction time: ``out=``, ``where=`` ...);
* ``object-array``: an object array holding anything but plain scalars and
  estimators (reported always, refused when it holds other objects).

The narrow core that is never a finding: estimators, arrays of numbers and
strings, numpy dtypes/scalars/random states, scipy sparse matrices, and the
functions scikit-learn itself stores by default.
"""
import inspect
import numbers

import numpy as np

MAX_FINDINGS = 50
_SCALARS = (str, bytes, numbers.Number, bool, type(None), np.generic)
_FUNCTION_SLOTS = {"func", "inverse_func", "analyzer", "tokenizer", "preprocessor", "kernel",
                   "metric", "score_func", "pooling_func", "affinity", "weights"}
_KW_ARGS = ("kw_args", "inv_kw_args", "metric_params", "kernel_params")


def _defaults(cls):
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return {}
    return {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}


def _name(obj):
    return "%s.%s" % (getattr(obj, "__module__", None) or "?",
                      getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
                      or type(obj).__name__)


def _safe_callable(value, owner):
    import functools
    if isinstance(value, np.ufunc):
        return not any(getattr(owner, k, None) for k in _KW_ARGS)
    if isinstance(value, functools.partial):
        from sklearn.utils.validation import check_array
        return value.func is check_array and not value.args
    module = getattr(value, "__module__", "") or ""
    if inspect.isfunction(value) and module.split(".")[0] == "sklearn":
        return True
    from chalicelib.safeload import user_code  # the user's own shipped code (publish --code)
    return inspect.isfunction(value) and user_code.defines(value)


def inspect_model(root):
    """``{"findings": [...], "object_arrays": n, "refused": n}`` for ``root``."""
    from sklearn.base import BaseEstimator
    findings, object_arrays = [], 0
    seen = set()
    stack = [(root, type(root).__name__)]

    def add(kind, where, detail, refused):
        if len(findings) < MAX_FINDINGS:
            findings.append({"kind": kind, "where": where, "detail": detail[:200],
                             "refused": refused})

    while stack:
        obj, where = stack.pop()
        if id(obj) in seen or isinstance(obj, _SCALARS) or isinstance(obj, type):
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                object_arrays += 1
                odd = [type(x).__name__ for x in obj.flat
                       if not (isinstance(x, _SCALARS + (BaseEstimator,))
                               or (isinstance(x, np.ndarray) and not x.dtype.hasobject))]
                if odd:
                    add("object-array", where, "object array holding %s"
                        % ", ".join(sorted(set(odd))[:5]), True)
                stack.extend((x, where + "[...]") for x in obj.flat
                             if isinstance(x, BaseEstimator))
            continue
        if isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend((x, "%s[%d]" % (where, i)) for i, x in enumerate(obj))
            continue
        if isinstance(obj, dict):
            stack.extend((v, "%s[%r]" % (where, k)) for k, v in obj.items())
            continue
        if isinstance(obj, BaseEstimator):
            _inspect_estimator(obj, where, add)
        attrs = getattr(obj, "__dict__", None)
        if isinstance(attrs, dict):
            stack.extend((v, "%s.%s" % (where, k)) for k, v in attrs.items()
                         if not (isinstance(obj, BaseEstimator) and k in _KW_ARGS))
    return {"findings": findings, "object_arrays": object_arrays,
            "refused": sum(1 for f in findings if f["refused"])}


def _inspect_estimator(est, where, add):
    defaults = _defaults(type(est))
    attrs = vars(est)
    if attrs.get("input") in ("filename", "file"):
        add("file-input", "%s.input" % where,
            "%s reads the files its input names (input=%r)"
            % (type(est).__name__, attrs["input"]), True)
    for key in _KW_ARGS:
        value = attrs.get(key)
        if value:
            add("function-arguments", "%s.%s" % (where, key),
                "arguments passed to a function at prediction time: %s"
                % ", ".join(map(str, list(value)[:5]) if isinstance(value, dict) else ["..."]),
                True)
    for key, value in attrs.items():
        if not _is_function(value):
            continue
        if key in defaults and defaults[key] is value:
            continue
        safe = _safe_callable(value, est)
        if key in _FUNCTION_SLOTS or not safe:
            add("callable", "%s.%s" % (where, key), "%s is called with the model's input"
                % _name(value), not safe)


def _is_function(value):
    """Functions, builtins, ufuncs and partials; instances of allowed classes
    with ``__call__`` (losses, scorers, interpolators) are data."""
    import functools
    return (inspect.isfunction(value) or inspect.isbuiltin(value) or inspect.ismethod(value)
            or isinstance(value, (np.ufunc, functools.partial)))


def refusal(report):
    """The reason to refuse a model with this report, or None."""
    refused = [f for f in report["findings"] if f["refused"]]
    if not refused:
        return None
    first = refused[0]
    more = " (and %d more)" % (len(refused) - 1) if len(refused) > 1 else ""
    return "model can read files or call functions: %s at %s%s" % (
        first["detail"], first["where"], more)
