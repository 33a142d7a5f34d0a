"""Which installed distributions a fitted estimator needs, and whether the
Lambda will have them: every class and function reachable from the
estimator names a module, every module a distribution, and each of those
must be pinned in ``requirements.txt`` (what the Lambda ships) or be part of
the standard library.
"""
import functools
import importlib.metadata
import sys
import re
import types

from chalicelib.safeload.safe_pickle import MISNAMED_MODULES

_SCALARS = (str, bytes, int, float, complex, bool, type(None))


def modules_of(estimator, limit=200_000):
    """The top-level module names of the types and callables reachable from
    ``estimator`` (attributes, containers, numpy object arrays)."""
    seen, found = set(), set()
    stack = [estimator]
    while stack and len(seen) < limit:
        obj = stack.pop()
        if isinstance(obj, _SCALARS) or id(obj) in seen:
            continue
        seen.add(id(obj))
        kind = type(obj)
        found.add(kind.__module__)
        if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, type)) or \
                callable(obj) and hasattr(obj, "__module__") and not hasattr(obj, "__dict__"):
            found.add(getattr(obj, "__module__", None) or "")
            continue
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif kind.__module__ == "numpy" and getattr(obj, "dtype", None) is not None:
            if obj.dtype.kind == "O":
                stack.extend(obj.ravel().tolist()[:10_000])
            continue
        elif isinstance(obj, types.MethodType):
            stack.append(obj.__self__)
            found.add(obj.__func__.__module__ or "")
        if hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())
        if isinstance(obj, functools.partial):
            stack.extend([obj.func, obj.args, obj.keywords])
    # A Cython class of some releases names a module of its own ("_loss")
    # rather than the package's module that defines it.
    return {MISNAMED_MODULES.get(m, m).split(".")[0] for m in found if m}


def canonical(name):
    """A distribution's name as pip compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(requirements):
    """``{canonical name: version}`` of the exact pins in ``requirements``."""
    pins = {}
    with open(requirements) as f:
        for line in f:
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)", line)
            if match:
                pins[canonical(match.group(1))] = match.group(2)
    return pins


def unpinned_distributions(estimator, pins):
    """``{distribution: module}`` of what the estimator needs but ``pins``
    (canonical names) lack; modules of no distribution but the standard
    library's are reported under their own name."""
    by_module = importlib.metadata.packages_distributions()
    missing = {}
    for module in sorted(modules_of(estimator)):
        if module in sys.stdlib_module_names or module in ("builtins", "__main__"):
            continue
        distributions = by_module.get(module) or [module]
        if not any(canonical(d) in pins for d in distributions):
            missing[distributions[0]] = module
    return missing
