"""A corpus of malicious model artifacts, each a real joblib/pickle file.

Every payload tries to create its *marker* file; a loader is safe against it
if the marker never appears. :func:`build` writes one case into a directory
as ``model.joblib`` (plus any companion file the payload re-enters through),
so the same directory serves as a ``MODEL_DIR`` and as input to
``model.publish``.

Payloads are written with a tiny pickle assembler (:func:`assemble`) so that
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

# --------------------------------------------------------------------------
# A tiny pickle assembler: expressions to protocol-4 opcodes.


class G:
    """A global, ``module.name`` (emitted as GLOBAL, or STACK_GLOBAL when
    ``stack=True``, which also allows dotted names under protocol 4)."""

    def __init__(self, module, name, stack=False):
        self.module, self.name, self.stack = module, name, stack


class Call:
    """``func(*args)`` through REDUCE."""

    def __init__(self, func, *args):
        self.func, self.args = func, args


class Let:
    """Evaluate ``expr`` first (so its globals come first), keep it in memo
    slot ``slot``; :class:`Ref` reads it back."""

    def __init__(self, slot, expr):
        self.slot, self.expr = slot, expr


class Ref:
    def __init__(self, slot):
        self.slot = slot


class Build:
    """``obj`` with ``state`` applied by BUILD (``__setstate__`` or
    ``__dict__.update``), as pickle does after constructing an object."""

    def __init__(self, obj, state):
        self.obj, self.state = obj, state


def _emit(x, out):
    if isinstance(x, G):
        if x.stack:
            _emit(x.module, out)
            _emit(x.name, out)
            out.append(pickle.STACK_GLOBAL)
        else:
            out.append(pickle.GLOBAL + ("%s\n%s\n" % (x.module, x.name)).encode())
    elif isinstance(x, Call):
        _emit(x.func, out)
        out.append(pickle.MARK)
        for arg in x.args:
            _emit(arg, out)
        out.append(pickle.TUPLE + pickle.REDUCE)
    elif isinstance(x, Build):
        _emit(x.obj, out)
        _emit(x.state, out)
        out.append(pickle.BUILD)
    elif isinstance(x, Ref):
        out.append(pickle.BINGET + bytes([x.slot]))
    elif isinstance(x, str):
        data = x.encode("utf-8")
        out.append(pickle.BINUNICODE + struct.pack("<I", len(data)) + data)
    elif isinstance(x, bytes):
        out.append(pickle.BINBYTES + struct.pack("<I", len(x)) + x)
    elif x is None:
        out.append(pickle.NONE)
    elif x is True or x is False:
        out.append(pickle.NEWTRUE if x else pickle.NEWFALSE)
    elif isinstance(x, int):
        out.append(pickle.INT + b"%d\n" % x)
    elif isinstance(x, list):
        out.append(pickle.EMPTY_LIST + pickle.MARK)
        for item in x:
            _emit(item, out)
        out.append(pickle.APPENDS)
    elif isinstance(x, dict):
        out.append(pickle.EMPTY_DICT + pickle.MARK)
        for key, value in x.items():
            _emit(key, out)
            _emit(value, out)
        out.append(pickle.SETITEMS)
    else:
        raise TypeError("cannot assemble %r" % (x,))


def assemble(*exprs, protocol=4):
    """Pickle bytes evaluating ``exprs`` in order; the last one is the result.
    A :class:`Let` stores its value in the memo, any other value is popped."""
    out = [pickle.PROTO + bytes([protocol])]
    for i, x in enumerate(exprs):
        if isinstance(x, Let):
            _emit(x.expr, out)
            out.append(pickle.BINPUT + bytes([x.slot]) + pickle.POP)
        else:
            _emit(x, out)
            if i != len(exprs) - 1:
                out.append(pickle.POP)
    out.append(pickle.STOP)
    return b"".join(out)


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
