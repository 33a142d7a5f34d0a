"""The user's own code, shipped with the model (``publisher.publish --code``).

A pipeline may hold the user's functions or classes (a ``FunctionTransformer``
with their ``add_ratios``, a custom transformer): the pickle names them as
``my_features.add_ratios``. ``publisher.publish --code my_features.py`` (a module
file, or a package directory) copies that code into the model directory's
``code/`` and lists its top-level names in the card (``"code":
["my_features"]``); it ships in the package with the model.

At load, :func:`load_modules` imports exactly those files, from the model
directory, under their own names (refusing a name that an installed or
standard module already has: the shipped file must be the one imported), and
:func:`allowing` lets the restricted unpickler resolve, during that one load,
the functions and classes *defined* in them (``obj.__module__`` is the shipped
module): not what they import (``from os import system`` in the user's module
stays refused), not modules the card does not list.

A function defined in ``__main__`` (a notebook, a script) cannot be shipped:
the unpickler refuses it with the way out (a module and ``--code``).
"""
import contextlib
import contextvars
import importlib
import importlib.util
import inspect
import os
import re
import sys

from chalicelib.safeload import safe_pickle
from chalicelib.http.errors import ModelLoadError

CODE_DIR = "code"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Never user code, whatever the card says: the app and what it runs on.
RESERVED = frozenset({"app", "chalice", "chalicelib", "model", "tools", "tests",
                      "sklearn", "numpy", "scipy", "joblib", "pandas", "threadpoolctl"})
MAIN_REFUSAL = ("artifact references __main__.%s, defined in a notebook or script, which "
                "cannot ship with the model: move it into a module (say my_features.py), "
                "import it from there, fit and save again, and publish with --code "
                "my_features.py")

_allowed = contextvars.ContextVar("allowed_user_modules", default=None)


def check_name(name):
    """Refuse a module name that is not a plain identifier, or that belongs
    to the app, its dependencies or the standard library."""
    if not (isinstance(name, str) and _NAME.match(name)):
        raise ModelLoadError("user code module name %r is not a Python identifier" % (name,))
    if name in RESERVED or name in sys.stdlib_module_names:
        raise ModelLoadError("user code module %s has the name of a module of the app, its "
                             "dependencies or the standard library; rename it" % name)


def module_file(code_dir, name):
    """(path, is_package) of module ``name`` in ``code_dir``."""
    package = os.path.join(code_dir, name, "__init__.py")
    if os.path.isfile(package):
        return package, True
    single = os.path.join(code_dir, name + ".py")
    if os.path.isfile(single):
        return single, False
    raise ModelLoadError("user code module %s is not in the model directory (%s/)"
                         % (name, CODE_DIR))


def _inside(path, directory):
    return os.path.realpath(path).startswith(os.path.realpath(directory) + os.sep)


def load_modules(code_dir, names):
    """Import the shipped modules ``names`` from ``code_dir``; {name: module}."""
    modules = {}
    for name in names:
        check_name(name)
        path, is_package = module_file(code_dir, name)
        loaded = sys.modules.get(name)
        if loaded is not None:
            if not _inside(getattr(loaded, "__file__", None) or "/", code_dir):
                raise ModelLoadError("user code module %s is already imported from %s, not "
                                     "from the model directory" % (name, loaded.__file__))
            modules[name] = loaded
            continue
        spec = importlib.util.spec_from_file_location(
            name, path, submodule_search_locations=[os.path.dirname(path)] if is_package
            else None)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise ModelLoadError("user code module %s fails to import: %s: %s"
                                 % (name, type(exc).__name__, exc),
                                 public="the model's own code fails to import (%s)"
                                 % type(exc).__name__) from None
        modules[name] = module
    return modules


@contextlib.contextmanager
def allowing(code_dir, modules):
    """Let the unpickler resolve what ``modules`` define, in this context only."""
    token = _allowed.set((code_dir, dict(modules)))
    try:
        yield
    finally:
        _allowed.reset(token)


def defines(value):
    """True when ``value`` (a function or class) is defined in a user module
    shipped with the model and allowed in this context: the user's own code,
    shipped on purpose, which the audit then does not count as foreign."""
    allowed = _allowed.get()
    module = getattr(value, "__module__", None)
    if not allowed or not isinstance(module, str):
        return False
    code_dir, modules = allowed
    mod = sys.modules.get(module)
    return (module.split(".", 1)[0] in modules and mod is not None
            and _inside(getattr(mod, "__file__", None) or "/", code_dir))


def resolve(module, name):
    """safe_pickle's extra rule: a function or class defined in a shipped
    module (or a submodule of a shipped package), else None."""
    if module == "__main__":
        raise ModelLoadError(MAIN_REFUSAL % name)
    allowed = _allowed.get()
    if not allowed:
        return None
    code_dir, modules = allowed
    if module.split(".", 1)[0] not in modules:
        return None
    mod = sys.modules.get(module)
    if mod is None:  # a submodule of a shipped package, not imported yet
        try:
            mod = importlib.import_module(module)
        except ImportError:
            return None
    if not _inside(getattr(mod, "__file__", None) or "/", code_dir):
        return None
    obj = vars(mod).get(name)
    if (inspect.isfunction(obj) or isinstance(obj, type)) and obj.__module__ == module:
        return obj
    return None


safe_pickle.EXTRA_RULES.append(resolve)
