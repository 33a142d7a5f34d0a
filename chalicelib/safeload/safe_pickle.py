"""A restricted unpickler for joblib artifacts: only the scientific stack.

``joblib.load`` is ``pickle``: an artifact can name any importable callable
(``os.system``, ``builtins.eval``, ``numpy.load`` with ``allow_pickle``...)
and the unpickler calls it. :func:`load` reads a joblib file exactly as
``joblib.load`` does (same decompression, same ``NumpyUnpickler`` and its
array wrappers) but with ``find_class`` overridden: every global the stream
names is checked *before* anything is imported or called, and anything not
on the allowlist below raises :class:`~chalicelib.http.errors.ModelLoadError`.
Object arrays, which joblib stores as a nested pickle, are read by a nested
unpickler that joblib routes through the same ``find_class``.

The allowlist is data, not modules:

* :data:`ALLOWED_GLOBALS`: exact ``(module, name)`` pairs, found by dumping
  the bundled model, a random forest, gradient boosting (regression), histogram
  gradient boosting (classification), a Pipeline with a ColumnTransformer
  (StandardScaler, OneHotEncoder), and every default-constructed estimator of
  ``sklearn.utils.all_estimators()`` that fits on a small numeric data set,
  then recording each global the unpickler asked for. Functions are listed
  one by one, and only ones that compute (no I/O, no import, no eval).
* :data:`SKLEARN_CLASS_BASES`: a *class* defined in a ``sklearn`` module
  (``cls.__module__`` equals the module named) and derived from one of these
  bases, so that bring-your-own models of any estimator type load. Test and
  mocking modules are excluded (:data:`SKLEARN_DENIED_MODULES`).
* NumPy scalar types (subclasses of ``numpy.generic`` defined in ``numpy``)
  and NumPy ufuncs (``FunctionTransformer(func=numpy.log1p)``).
* SciPy sparse matrix and array classes, from their defining modules only.

Never allowed, whatever the module: dotted names (``inspect.os.system``
reached through ``sklearn.base``), builtins beyond a few inert types,
``getattr``, ``functools``/``operator`` gadgets, ``copyreg._reconstructor``,
``numpy.load``, ``pickle``, ``joblib.load`` and joblib's legacy
``NDArrayWrapper`` (which reads a companion ``.npy`` file with
``numpy.load(allow_pickle=True)``). joblib's pre-0.10 "ZF" format is refused
outright: it is read by an unpickler we cannot restrict.

Names are half of it: what the stream *does* with them (calls, BUILD,
SETITEMS, arrays and dtypes) is checked by :mod:`chalicelib.safeload.pickle_guard`,
and reads and allocations are charged to a
:class:`~chalicelib.safeload.load_budget.Budget`. A crafted state for an allowed
class (a ``Tree`` whose node indices point outside its arrays) is caught
after unpickling by :mod:`chalicelib.safeload.validate_native`.

A refusal names the global (or the operation), says why, and names the
opt-out (``TRUST_MODEL_PICKLE``).
"""
import importlib
import inspect
import os
import pickle
import re
import struct
import threading
import warnings

import joblib
from joblib import numpy_pickle, numpy_pickle_utils

from chalicelib.safeload import pickle_guard, trial_load
from chalicelib.http.errors import ModelLoadError
from chalicelib.safeload.load_budget import Budget, BudgetedReader

# --------------------------------------------------------------------------
# The allowlist (data).

#: Exact globals. Comments say which model first needed them.
ALLOWED_GLOBALS = frozenset({
    # joblib's array placeholder (the array bytes follow it in the stream).
    ("joblib.numpy_pickle", "NumpyArrayWrapper"),
    # Inert builtins (slice: ColumnTransformer column selections).
    ("builtins", "slice"),
    ("builtins", "complex"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "range"),
    ("collections", "OrderedDict"),
    # sklearn.compose's estimator-free helper a ColumnTransformer keeps as a
    # column selection: a dtype filter and a regular expression over the
    # DataFrame's column names (make_column_transformer returns a
    # ColumnTransformer and is never pickled).
    ("sklearn.compose._column_transformer", "make_column_selector"),
    # NumPy arrays, dtypes, scalars and protocol-5 buffers.
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    # The same under NumPy 1.x names (models saved with numpy<2).
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    # numpy.ma masked arrays (GridSearchCV's cv_results_).
    ("numpy.ma.core", "_mareconstruct"),
    ("numpy.ma.core", "MaskedArray"),
    ("numpy.ma", "MaskedArray"),
    # Random states and generators (GradientBoosting*, HistGradientBoosting*,
    # random forests with a RandomState).
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random.mtrand", "RandomState"),
    ("numpy.random._generator", "Generator"),
    ("numpy.random._mt19937", "MT19937"),
    ("numpy.random._pcg64", "PCG64"),
    ("numpy.random._pcg64", "PCG64DXSM"),
    ("numpy.random._philox", "Philox"),
    ("numpy.random._sfc64", "SFC64"),
    ("numpy.random.bit_generator", "SeedSequence"),
    ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"),
    # Pure functions stored as hyper-parameters by default constructors.
    ("numpy", "mean"),                       # FeatureAgglomeration(pooling_func)
    ("sklearn.feature_selection._univariate_selection", "f_classif"),  # SelectKBest
    ("sklearn.feature_selection._univariate_selection", "f_regression"),
    ("sklearn.feature_selection._univariate_selection", "r_regression"),
    ("sklearn.feature_selection._univariate_selection", "chi2"),
    ("sklearn.feature_selection._mutual_info", "mutual_info_classif"),
    ("sklearn.feature_selection._mutual_info", "mutual_info_regression"),
    ("sklearn.cluster._kmeans", "_kmeans_single_lloyd"),  # BisectingKMeans
    # HistGradientBoosting's categorical preprocessor: FunctionTransformer(
    # partial(check_array, ...)); partial itself is GUARDED_GLOBALS.
    ("sklearn.utils.validation", "check_array"),
    # Cython types and their pickle helpers.
    ("sklearn.tree._tree", "Tree"),          # every tree and forest
    ("sklearn.ensemble._hist_gradient_boosting.predictor", "TreePredictor"),
    ("sklearn._loss.link", "Interval"),      # loss objects of GB/HGB
    ("sklearn._loss._loss", "CyHalfMultinomialLoss"),   # multiclass GB/HGB (no Cy base)
    ("sklearn.metrics._scorer", "_PassthroughScorer"),  # searches' scorer_
    ("sklearn.neighbors._kd_tree", "KDTree"),
    ("sklearn.neighbors._kd_tree", "newObj"),
    ("sklearn.neighbors._ball_tree", "BallTree"),
    ("sklearn.neighbors._ball_tree", "newObj"),
    ("sklearn.metrics._dist_metrics", "newObj"),
    # Private helper classes of estimators (not BaseEstimator subclasses).
    ("sklearn.calibration", "_CalibratedClassifier"),
    ("sklearn.cluster._birch", "_CFNode"),
    ("sklearn.cluster._birch", "_CFSubcluster"),
    ("sklearn.cluster._bisect_k_means", "_BisectingTree"),
    ("sklearn.neural_network._stochastic_optimizers", "AdamOptimizer"),
    ("sklearn.neural_network._stochastic_optimizers", "SGDOptimizer"),
    ("sklearn.utils._bunch", "Bunch"),
    # Metadata routing records (TunedThresholdClassifierCV's scorer).
    ("sklearn.utils._metadata_requests", "MetadataRequest"),
    ("sklearn.utils._metadata_requests", "MethodMetadataRequest"),
    # SplineTransformer.
    ("scipy.interpolate._bsplines", "BSpline"),
    ("scipy._lib.array_api_compat.numpy._aliases", "asarray"),
})

#: Globals of older scikit-learn releases only: a model of one of those is
#: loaded in an environment of its release (``publisher/build_env.py``), by
#: this same unpickler; here they do not resolve, so they are refused.
OLDER_RELEASES_GLOBALS = frozenset({
    # 1.5 and 1.6 ColumnTransformer: its remainder's columns, an inert list
    # with warning flags
    ("sklearn.compose._column_transformer", "_RemainderColsList"),
    # GradientBoosting* before 1.4: the loss, a plain object holding its
    # parameters (the number of classes, alpha); set by fit, never called at load
    ("sklearn.ensemble._gb_losses", "LeastSquaresError"),
    ("sklearn.ensemble._gb_losses", "LeastAbsoluteError"),
    ("sklearn.ensemble._gb_losses", "HuberLossFunction"),
    ("sklearn.ensemble._gb_losses", "QuantileLossFunction"),
    ("sklearn.ensemble._gb_losses", "BinomialDeviance"),
    ("sklearn.ensemble._gb_losses", "MultinomialDeviance"),
    ("sklearn.ensemble._gb_losses", "ExponentialLoss"),
})
ALLOWED_GLOBALS = ALLOWED_GLOBALS | OLDER_RELEASES_GLOBALS

#: Modules some older releases' Cython classes name instead of their own:
#: scikit-learn 1.5 to 1.7 (built with meson) give the loss classes that
#: GradientBoosting* and HistGradientBoosting* keep ``__module__ == "_loss"``,
#: so their pickles name ``_loss.CyHalfBinomialLoss``. Such a name resolves
#: only to a class the real module defines under that name, in an environment
#: of such a release; here there is none, so it is refused.
MISNAMED_MODULES = {"_loss": "sklearn._loss._loss"}

#: Reconstruction helpers: functions pickle calls to rebuild arrays, dtypes,
#: scalars and random states (the audit's "core"; other functions on the
#: allowlist are values a model keeps, reported by the audit).
RECONSTRUCTORS = frozenset({
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy.ma.core", "_mareconstruct"), ("_codecs", "encode"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__randomstate_ctor"), ("numpy.random._pickle", "__generator_ctor"),
    ("sklearn.neighbors._kd_tree", "newObj"), ("sklearn.neighbors._ball_tree", "newObj"),
    ("sklearn.metrics._dist_metrics", "newObj"),
})

#: A class defined in an sklearn module is allowed if it derives from one of
#: these (estimators and transformers, losses and links, GP kernels,
#: distance metrics).
SKLEARN_CLASS_BASES = frozenset({
    ("sklearn.base", "BaseEstimator"),
    ("sklearn._loss.loss", "BaseLoss"),
    ("sklearn._loss.link", "BaseLink"),
    ("sklearn._loss._loss", "CyLossFunction"),
    ("_loss", "CyLossFunction"),  # the same, as releases 1.5 to 1.7 name it (below)
    ("sklearn.gaussian_process.kernels", "Kernel"),
    ("sklearn.metrics._dist_metrics", "DistanceMetric"),
    ("sklearn.metrics._scorer", "_BaseScorer"),   # searches with scoring=...
    # CV splitters, kept by GridSearchCV & co. as their ``cv``.
    ("sklearn.model_selection._split", "BaseCrossValidator"),
    ("sklearn.model_selection._split", "BaseShuffleSplit"),
    ("sklearn.model_selection._split", "_RepeatedSplits"),
})

#: Types an artifact may hold as *values* only: make_column_selector's dtype
#: filter (``dtype_include=object``, ``bool``, ``int``, ``float``).
#: :func:`resolve` returns them, but they are not allowed classes
#: (:func:`is_allowed_class` is False), so pickle_guard never calls, creates
#: or sets the state of one.
VALUE_GLOBALS = frozenset({("builtins", "object"), ("builtins", "bool"), ("builtins", "int"),
                           ("builtins", "float")})

#: Globals that are dangerous in general and allowed only because
#: :mod:`chalicelib.safeload.pickle_guard` checks each use: ``functools.partial`` may
#: only wrap ``sklearn.utils.validation.check_array`` with keyword options;
#: ``_codecs.encode`` is how protocol 2 writes ``bytes``; it may only turn a
#: str into latin-1 bytes; ``bytearray`` (how protocols < 5 write one, e.g.
#: xgboost's Booster state) may only copy bytes the pickle holds, never
#: allocate by a count.
GUARDED_GLOBALS = frozenset({("functools", "partial"), ("_codecs", "encode"),
                             ("builtins", "bytearray")})

#: sklearn modules whose classes are never allowed by the rule above, even
#: when they are estimators: test helpers, mocks, dataset fetchers, vendored
#: code. Matched as a module or a package prefix.
SKLEARN_DENIED_MODULES = (
    "sklearn.utils._testing",
    "sklearn.utils._mocking",
    "sklearn.utils.estimator_checks",
    "sklearn.utils._test_common",
    "sklearn.utils._show_versions",
    "sklearn.datasets",
    "sklearn.externals",
    "sklearn.experimental",
    "sklearn.conftest",
    "sklearn._build_utils",
    "sklearn.__check_build",
)

#: SciPy sparse containers: classes defined in these modules and derived
#: from scipy.sparse's base class.
SCIPY_SPARSE_MODULES = frozenset(
    "scipy.sparse._%s" % kind for kind in ("csr", "csc", "coo", "bsr", "dia", "dok", "lil"))

OPT_OUT = "opt out with TRUST_MODEL_PICKLE=true only for an artifact you built"
REFUSAL = ("artifact references %s, which is not on the allowlist of the scientific stack "
           "(unpickling runs what an artifact names); " + OPT_OUT)

#: Extra rules, ``rule(module, name) -> object or None`` (or raise
#: ModelLoadError), asked about a global only after the allowlist and the
#: class rules above said no. chalicelib.safeload.user_code adds one for the model's
#: shipped code. Their answers are not cached: they hold for one load only.
EXTRA_RULES = []

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")

# --------------------------------------------------------------------------
# Deciding.

_resolved = {}          # (module, name) -> object, for allowed globals only
_resolved_lock = threading.Lock()


def _shown(module, name):
    text = "%s.%s" % (module, name)
    if len(text) > 100 or not text.isprintable():
        text = repr(text[:80])
    return text


def _refuse(module, name):
    raise ModelLoadError(REFUSAL % _shown(module, name))


def _denied_sklearn(module):
    return any(module == d or module.startswith(d + ".") for d in SKLEARN_DENIED_MODULES) \
        or ".tests" in module or module.endswith("._testing")


def _defined_here(obj, module):
    return isinstance(obj, type) and getattr(obj, "__module__", None) == module


def _derives_from_allowed_base(cls):
    # By name along the MRO: real classes only (an artifact cannot define
    # one), and no need to import the bases' modules on the cold start.
    return any((getattr(c, "__module__", None), getattr(c, "__qualname__", None))
               in SKLEARN_CLASS_BASES for c in cls.__mro__)


def _by_rule(module, name):
    """The object for a global allowed by one of the class rules, or None.

    Modules are imported only once their name has passed the checks; the
    attribute is read from the module's ``__dict__`` (no module
    ``__getattr__``, no dotted traversal)."""
    if module in MISNAMED_MODULES:
        obj = vars(importlib.import_module(MISNAMED_MODULES[module])).get(name)
        return obj if _defined_here(obj, module) and _derives_from_allowed_base(obj) else None
    root = module.split(".", 1)[0]
    if root == "sklearn":
        if _denied_sklearn(module):
            return None
        namespace = vars(importlib.import_module(module))
        obj = namespace.get(name)
        if _defined_here(obj, module) and _derives_from_allowed_base(obj):
            return obj
        # Cython's pickle helper for an allowed class of the same module
        # (``__pyx_unpickle_CyHalfMultinomialLoss``); pickle_guard checks
        # that it is called for that class only.
        if name.startswith("__pyx_unpickle_") and callable(obj):
            cls_name = name[len("__pyx_unpickle_"):]
            cls = namespace.get(cls_name)
            if _defined_here(cls, module) and ((module, cls_name) in ALLOWED_GLOBALS
                                               or _derives_from_allowed_base(cls)):
                return obj
        # Metric functions kept as values by scorers (never called at load).
        if module.startswith("sklearn.metrics.") and not name.startswith("_") \
                and inspect.isfunction(obj) and obj.__module__ == module:
            return obj
        return None
    if module == "numpy":
        import numpy
        obj = vars(numpy).get(name)
        if _defined_here(obj, "numpy") and issubclass(obj, numpy.generic):
            return obj
        if isinstance(obj, numpy.ufunc):
            return obj
        return None
    if module in SCIPY_SPARSE_MODULES:
        from scipy.sparse._base import _spbase
        obj = vars(importlib.import_module(module)).get(name)
        if _defined_here(obj, module) and issubclass(obj, _spbase):
            return obj
    return None


def resolve(module, name):
    """The object an artifact may name as ``module.name``; ModelLoadError if
    it is not allowed. Nothing is imported for a name that fails the
    syntactic checks or names a module outside the scientific stack."""
    if not (isinstance(module, str) and isinstance(name, str)):
        _refuse(module, name)
    key = (module, name)
    obj = _resolved.get(key)
    if obj is not None:
        return obj
    if not (_MODULE.match(module) and _IDENTIFIER.match(name)):
        _refuse(module, name)               # dotted names, odd characters
    with trial_load.importing():
        obj, cached = _import_allowed(module, name)
    if cached:
        with _resolved_lock:
            _resolved[key] = obj
    return obj


def _import_allowed(module, name):
    """``(object, whether it may be cached)``; the extra rules (the user's
    shipped code among them) answer per load, so they are not cached."""
    key = (module, name)
    if key in ALLOWED_GLOBALS or key in GUARDED_GLOBALS or key in VALUE_GLOBALS:
        try:
            obj = vars(importlib.import_module(module))[name]
        except (ImportError, KeyError):
            _refuse(module, name)
    else:
        try:
            obj = _by_rule(module, name)
        except ImportError:
            obj = None
        if obj is None:
            for rule in EXTRA_RULES:
                extra = rule(module, name)
                if extra is not None:
                    return extra, False
            _refuse(module, name)
    return obj, True


# --------------------------------------------------------------------------
# Loading. joblib.load builds its NumpyUnpickler inside a private function
# with no way to pass another class, so load() repeats the few lines of
# joblib.load around it; check_joblib() proves those internals are the ones
# this was written against and fails closed if they are not.

EXPECTED_JOBLIB = "1.6.0"
_UNPICKLER_PARAMS = ["self", "filename", "file_handle", "ensure_native_byte_order", "mmap_mode"]


def check_joblib():
    """Raise ModelLoadError unless joblib's internals are as expected."""
    problems = []
    init = getattr(getattr(numpy_pickle, "NumpyUnpickler", None), "__init__", None)
    if init is None or list(inspect.signature(init).parameters) != _UNPICKLER_PARAMS:
        problems.append("NumpyUnpickler.__init__ signature")
    if not callable(getattr(numpy_pickle_utils, "_validate_fileobject_and_memmap", None)):
        problems.append("numpy_pickle_utils._validate_fileobject_and_memmap")
    if getattr(numpy_pickle_utils, "Unpickler", None) is not __import__("pickle")._Unpickler:
        problems.append("numpy_pickle_utils.Unpickler is not pickle._Unpickler")
    read_array = getattr(getattr(numpy_pickle, "NumpyArrayWrapper", None), "read_array", None)
    # Numeric arrays are read by joblib through unpickler.file_handle (which
    # load() makes a budgeted reader); object arrays are read by pickle_guard.
    if read_array is None or "_read_bytes(unpickler.file_handle" \
            not in inspect.getsource(read_array):
        problems.append("array data is no longer read through the unpickler's file handle")
    if problems:
        raise ModelLoadError(
            "joblib %s differs from the %s the restricted unpickler was written for (%s); "
            "refusing to unpickle" % (joblib.__version__, EXPECTED_JOBLIB, ", ".join(problems)))


def is_allowed_class(cls):
    """True if ``cls`` is a class an artifact may name (by its own module and
    name): what pickle_guard lets the stream create and BUILD."""
    module, name = getattr(cls, "__module__", None), getattr(cls, "__qualname__", None)
    if not (isinstance(module, str) and isinstance(name, str)) or (module, name) in VALUE_GLOBALS:
        return False
    try:
        return resolve(module, name) is cls
    except ModelLoadError:
        return False


class RestrictedUnpickler(numpy_pickle.NumpyUnpickler):
    """joblib's unpickler with every global checked by :func:`resolve` and
    every state-changing opcode checked by :class:`pickle_guard.Guard`."""

    # Same copy-of-dispatch idiom as NumpyUnpickler.
    dispatch = numpy_pickle.NumpyUnpickler.dispatch.copy()
    pickle_guard.install(dispatch)

    def __init__(self, filename, file_handle, guard):
        super().__init__(filename, file_handle, ensure_native_byte_order=True)
        self.guard = guard

    def nested(self, file_handle):
        """An unpickler for a nested stream (joblib's object arrays) that
        shares this one's guard and budget."""
        return RestrictedUnpickler(self.filename, file_handle, self.guard)

    def find_class(self, module, name):
        if self.proto < 3 and self.fix_imports:
            from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
            if (module, name) in NAME_MAPPING:
                module, name = NAME_MAPPING[(module, name)]
            elif module in IMPORT_MAPPING:
                module = IMPORT_MAPPING[module]
        return resolve(module, name)

    def _instantiate(self, klass, args):      # INST and OBJ (protocols 0 and 1)
        self.append(self.guard.call(klass, tuple(args)))

    def load_bytearray8(self):
        # pickle allocates the bytearray before reading its bytes.
        size, = struct.unpack("<Q", self.read(8))
        self.guard.budget.allocate(size, "a bytearray")
        buffer = bytearray(size)
        self.readinto(buffer)
        self.append(buffer)

    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8

    def persistent_load(self, pid):
        raise ModelLoadError("artifact uses pickle persistent ids, which are not supported")


_checked = False


def load(path):
    """``joblib.load(path)`` with the restricted unpickler (no mmap), within
    the load budget of an artifact of this size."""
    global _checked
    if not _checked:
        check_joblib()
        _checked = True
    budget = Budget.for_artifact(os.path.getsize(path))
    with open(path, "rb") as f, warnings.catch_warnings():
        # joblib warns about its pre-0.10 format before we refuse it.
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                message=".*joblib version less than 0.10")
        with numpy_pickle_utils._validate_fileobject_and_memmap(f, path, None) as (fobj, _):
            if isinstance(fobj, str):
                raise ModelLoadError(
                    "artifact is in joblib's pre-0.10 format, whose unpickler cannot be "
                    "restricted; re-save it with a current joblib.dump")
            guard = pickle_guard.Guard(budget, is_allowed_class)
            reader = BudgetedReader(fobj, budget)
            return RestrictedUnpickler(path, reader, guard).load()


# --------------------------------------------------------------------------
# Resolving ahead. A load first tried in a child process
# (chalicelib.safeload.trial_load) would import the modules its globals name
# twice, once in the child and once here; most of a cold load is those
# imports. The names an uncompressed pickle uses are plain in its bytes, and
# resolving them (the allowlist applies, as in find_class) before the fork
# imports them once, in the process that keeps them.

# SHORT_BINUNICODE module, [MEMOIZE], SHORT_BINUNICODE name, [MEMOIZE], STACK_GLOBAL
_STACK_GLOBAL = re.compile(rb"\x8c([\x01-\xff])([A-Za-z_][\w.]*)\x94?\x8c([\x01-\xff])(\w+)\x94?\x93")
_GLOBAL = re.compile(rb"c([A-Za-z_][\w.]*)\n([A-Za-z_]\w*)\n")
_MAX_AHEAD = 256


def resolve_ahead(path):
    """Resolve the allowed globals that ``path``'s bytes name in plain
    pickle opcodes; anything else (a refused name, a compressed artifact) is
    left for the load to find. Returns how many were resolved."""
    import mmap
    names = set()
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            for m in _STACK_GLOBAL.finditer(data):
                if m.group(1)[0] == len(m.group(2)) and m.group(3)[0] == len(m.group(4)):
                    names.add((m.group(2), m.group(4)))
                if len(names) >= _MAX_AHEAD:
                    break
            for m in _GLOBAL.finditer(data):
                names.add((m.group(1), m.group(2)))
                if len(names) >= 2 * _MAX_AHEAD:
                    break
    except (OSError, ValueError):
        return 0
    resolved = 0
    for module, name in sorted(names):
        try:
            resolve(module.decode("ascii"), name.decode("ascii"))
            resolved += 1
        except (ModelLoadError, UnicodeDecodeError):
            pass
    return resolved
