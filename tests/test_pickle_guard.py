"""Each rule of chalicelib/safeload/pickle_guard.py, on a pickle assembled to break
exactly that rule with allowlisted names only (tools/fixtures/malicious.py's
assembler). Refusals happen before anything is called, so these run
in-process; tests/test_hostile_artifacts.py runs the issue's full
techniques in child processes."""
import numpy as np
import pytest

from chalicelib.http.errors import ModelLoadError
from chalicelib.safeload.loading import load_artifact
from tools.fixtures.malicious import Build, Call, G, Let, NewObj, Ref, SetItems, assemble

LR = G("sklearn.linear_model._base", "LinearRegression")


def _dtype(typestr):
    return Call(G("numpy", "dtype"), typestr, False, True)


def _array(state):
    return Build(Call(G("numpy._core.multiarray", "_reconstruct"), G("numpy", "ndarray"),
                      (0,), b"b"), state)


CASES = {
    "a ufunc is never called at load":
        (assemble(Call(G("numpy", "positive"), 1)), "calls"),
    "a value-function is never called at load":
        (assemble(Call(G("sklearn.feature_selection._univariate_selection", "f_classif"), 1, 2)),
         "calls"),
    "partial of anything but check_array":
        (assemble(Call(G("functools", "partial"), G("numpy", "positive"))), "functools.partial"),
    "partial state swapping its function":
        (assemble(Build(Call(G("functools", "partial"),
                             G("sklearn.utils.validation", "check_array")),
                        (G("numpy", "positive"), (), {}, None))), "functools.partial"),
    "SETITEMS on an array":
        (assemble(SetItems(_array((1, (2,), _dtype("f8"), False, b"\0" * 16)), (0, 1))),
         "SETITEMS on numpy.ndarray"),
    "SETITEMS on an estimator":
        (assemble(SetItems(NewObj(LR), ("coef_", 1))), "SETITEMS on sklearn"),
    "BUILD on a class (patching it for every later model)":
        (assemble(Build(LR, ({}, {"predict": G("numpy", "positive")}))), "sets the state of"),
    "BUILD on an array (rebuilt after creation)":
        (assemble(Let(0, _array((1, (1,), _dtype("f8"), False, b"\0" * 8))),
                  Build(Ref(0), (1, (1,), _dtype("f8"), False, b"\0" * 8))),
         "sets the state of numpy.ndarray"),
    "BUILD changing an object's __class__":
        (assemble(Build(NewObj(LR), ({}, {"__class__": G("sklearn.tree._classes",
                                                        "DecisionTreeRegressor")}))),
         "plain attribute names"),
    "a dtype's state applied twice":
        (assemble(Let(0, Build(_dtype("f8"), (3, "<", None, None, None, -1, -1, 0))),
                  Build(Ref(0), (3, "<", None, None, None, -1, -1, 0))),
         "not created just before"),
    "a shared dtype singleton": (assemble(Call(G("numpy", "dtype"), "f8")), "copy=True"),
    "array data shorter than its shape":
        (assemble(_array((1, (4,), _dtype("f8"), False, b"\0" * 8))), "does not match shape"),
    "object array from raw bytes":
        (assemble(_array((1, (1,), _dtype("O8"), False, b"\0" * 8))), "not a list"),
    "a structured dtype holding objects":
        (assemble(Build(_dtype("V16"), (3, "|", None, ("a", "b"),
                                        {"a": (_dtype("O8"), 0), "b": (_dtype("f8"), 8)},
                                        16, 1, np.dtype([("a", "O"), ("b", "f8")]).flags))),
         "holding Python objects"),
    "ndarray.__new__ over a buffer":
        (assemble(NewObj(G("numpy", "ndarray"), (8,), _dtype("u1"), b"\0" * 8)),
         "without constructor arguments"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_rule(tmp_path, name):
    data, says = CASES[name]
    path = tmp_path / "m.joblib"
    path.write_bytes(data)
    with pytest.raises(ModelLoadError) as info:
        load_artifact(str(path))
    assert says in str(info.value)
    assert "TRUST_MODEL_PICKLE" in str(info.value)


def test_canonical_reconstructions_still_load(tmp_path):
    """The same opcodes in numpy's own canonical form are accepted."""
    import pickle
    values = [np.arange(6.0).reshape(2, 3), np.array(["a", "bb"], dtype=object),
              np.zeros(3, dtype=[("a", "<i8"), ("b", "<f4")]), np.float32(1.5),
              np.ma.masked_array([1.0, 2.0], [0, 1]), np.dtype(">i4"),
              np.array(["x", "y"]), np.array(["2020-01-01", "2021-06-01"], dtype="M8[s]")]
    for protocol in (2, 4, 5):
        path = tmp_path / ("p%d.pkl" % protocol)
        path.write_bytes(pickle.dumps(values, protocol=protocol))
        loaded = load_artifact(str(path))
        for a, b in zip(values, loaded):
            assert type(a) is type(b)
            assert np.array_equal(np.asarray(a), np.asarray(b))
