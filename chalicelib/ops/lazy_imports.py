"""Lazy loading of the modules (of the dependencies and the standard library)
the build found imported but never executed by the served model.

``make build`` traces every request path of the app with the model
(``tools/build/lazy.py``) and writes the names of the modules that were
imported but whose code no request path needed into the package as
``chalicelib/_lazy_modules.json``. :func:`install`, called first thing in
``app.py``, puts a finder in front of ``sys.meta_path`` that gives each of
those modules a module object whose code runs on first use (the first
attribute read other than the import system's own metadata) instead of at
``import``. Outside the package (no list: the dev app, the tests) nothing is
installed and every import is eager as usual; ``LAZY_IMPORTS=off`` does
the same in the package.

Why not ``importlib.util.LazyLoader`` as is: on Python 3.12 its module loads
on *any* attribute read, ``__spec__`` included, and the import statement
reads ``__spec__`` of a module already in ``sys.modules``, so the second
``import scipy.stats`` anywhere (scikit-learn has several) would run it
after all; it is also not thread-safe before 3.13. This is the same
mechanism with those two differences. Only modules loaded from Python
source or bytecode can be lazy (an extension module runs its C init when it
is created); a package's ``__path__`` read (importing a submodule) still
runs the package, as an eager import would have.
"""
import _thread
import json
import os
import sys
from importlib.machinery import ModuleSpec, PathFinder, SourceFileLoader, SourcelessFileLoader

from chalicelib.http.config import LAZY_IMPORTS, ConfigError

LIST_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "_lazy_modules.json")
#: Set by the import system before a module runs (``_init_module_attrs``):
#: reading them tells nothing about a use of the module's code.
_METADATA = frozenset({"__spec__", "__name__", "__loader__", "__package__", "__file__",
                       "__cached__", "__class__"})
_ModuleType = type(sys)


class _LazyModule(_ModuleType):
    """A module whose code has not run yet: the first real attribute read runs it."""

    def __getattribute__(self, attr):
        if attr in _METADATA:
            return object.__getattribute__(self, attr)
        _run(self)
        # Its code has run (the class is a plain module again), or this
        # thread is running it (a circular import sees it half-done, as it
        # would an eager module).
        return _ModuleType.__getattribute__(self, attr)

    def __delattr__(self, attr):
        _run(self)
        _ModuleType.__delattr__(self, attr)


def _run(module):
    lazy = _PENDING.get(id(module))
    if lazy is None:
        return
    with lazy.lock:  # another thread reading it waits until its code has run
        if lazy.running or _PENDING.get(id(module)) is not lazy:
            return  # this thread is running it, or it has run meanwhile
        lazy.running = True
        name = lazy.spec.name
        # What the import system set on the module since (its submodules):
        # kept over what the module's own code binds, as an eager import
        # would have ended up with.
        before = lazy.attributes
        now = object.__getattribute__(module, "__dict__")
        updated = {k: v for k, v in now.items() if k not in before or before[k] is not v}
        lazy.spec.loader = lazy.loader
        now["__loader__"] = lazy.loader
        lazy.finder.ran.add(name)
        try:
            lazy.loader.exec_module(module)
        except BaseException:
            lazy.finder.failed.append(name)
            raise
        finally:
            del _PENDING[id(module)]
            object.__setattr__(module, "__class__", _ModuleType)
        now.update(updated)
        if lazy.finder.on_run is not None:
            lazy.finder.on_run(name)


#: id(module) -> its _LazyLoader, while its code has not run (the modules
#: stay in sys.modules, so ids are not reused). Not the module's __spec__:
#: the import system may set another one for a moment (see _Imported).
_PENDING = {}


class _LazyLoader:
    """Wraps a source/bytecode loader: ``exec_module`` defers the real one."""

    def __init__(self, loader, finder):
        self.loader = loader
        self.finder = finder
        self.lock = _thread.RLock()
        self.running = False
        self.spec = self.attributes = None

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.spec = module.__spec__
        self.attributes = dict(module.__dict__)
        _PENDING[id(module)] = self
        module.__class__ = _LazyModule

    def __getattr__(self, name):  # get_source, get_data, is_package, ... of the real one
        return getattr(self.loader, name)


class _Imported:
    """The loader of a module that running its lazy parent just imported:
    hands back that module as it is (see :meth:`LazyFinder.find_spec`)."""

    def __init__(self, module):
        self.module = module
        self.spec = object.__getattribute__(module, "__spec__")

    def create_module(self, spec):
        return self.module

    def exec_module(self, module):
        module.__spec__ = self.spec  # the import system set the stand-in's


class LazyFinder:
    """Finds the modules named in ``names`` as the path finder does, with a
    lazy loader. ``on_run(name)`` is called after a lazy module's code ran."""

    def __init__(self, names, on_run=None):
        self.names = frozenset(names)
        self.on_run = on_run
        self.ran = set()     # lazy modules whose code has run (or is running)
        self.failed = []     # lazy modules whose code raised when it ran

    def find_spec(self, name, path=None, target=None):
        # Importing ``a.b`` reads ``a.__path__``, which runs a lazy ``a``
        # (parents run before their children, as in an eager import); but
        # the import system checked whether ``a.b`` was already imported
        # *before* that read, and would now import it a second time (a C
        # extension refuses: "cannot load module more than once"). When the
        # parent's run has just imported it, the import gets that module.
        if target is None and name in sys.modules and name.rpartition(".")[0] in self.ran:
            return ModuleSpec(name, _Imported(sys.modules[name]))
        if name not in self.names:
            return None
        spec = PathFinder.find_spec(name, path, target)
        if spec is None or type(spec.loader) not in (SourceFileLoader, SourcelessFileLoader):
            return spec
        spec.loader = _LazyLoader(spec.loader, self)
        return spec

    def invalidate_caches(self):
        pass


def is_lazy(module):
    """True while ``module``'s code has not run."""
    return object.__getattribute__(module, "__class__") is _LazyModule


def install(names=None, on_run=None):
    """Make ``names`` (default: the package's ``_lazy_modules.json``, if
    any) lazy from now on; returns the finder, or None when there is no list
    or ``LAZY_IMPORTS=off`` (every import eager: a switch for the operator,
    and the comparison the cold-start measurement makes)."""
    if names is None:
        try:
            wanted = LAZY_IMPORTS.get()
        except ConfigError:  # the import hook must never stop the app: eager is safe
            wanted = False
        if not wanted:
            return None
        try:
            with open(LIST_FILE, "rb") as f:
                names = json.loads(f.read())["modules"]
        except FileNotFoundError:
            return None
    finder = LazyFinder(names, on_run)
    sys.meta_path.insert(0, finder)
    return finder
