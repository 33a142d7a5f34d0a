"""Which scikit-learn saved an artifact, read from the pickle's opcodes
without unpickling it.

scikit-learn writes ``_sklearn_version`` into the state of every estimator
it pickles (``BaseEstimator.__getstate__``). :func:`read` runs the pickle
machine of :mod:`pickle` with its object-making opcodes replaced, the way
:mod:`chalicelib.safeload.pickle_guard` replaces them: every global the
stream names is an inert :class:`Name` (nothing is imported), every call or
``__new__`` an inert :class:`Made` holding its arguments, and every BUILD
only records its state. Nothing of the artifact's runs, so this is safe on
an artifact nobody has audited yet, and it works whatever scikit-learn (or
none) is installed here.

joblib writes array bytes between opcodes, right after an array's
``NumpyArrayWrapper``: their size is computed from the wrapper's recorded
shape and dtype and they are skipped (an object array is a nested pickle,
walked the same way). Compressed joblib files are read through joblib's own
decompressing reader.
"""
import contextlib
import math
import pickle
import re

VERSION_KEY = "_sklearn_version"
_WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")
_SKIP_CHUNK = 1 << 20


class UnreadableStream(Exception):
    """The stream is not a pickle this reader can walk; the message says why."""


class Name:
    """A global the stream names; never imported."""

    __slots__ = ("module", "name")

    def __init__(self, module, name):
        self.module, self.name = module, name


class Made:
    """What a call, ``__new__`` or BUILD would have made; only its parts."""

    __slots__ = ("made_by", "args", "state")

    def __init__(self, made_by, args):
        self.made_by, self.args, self.state = made_by, args, None


def _is(obj, module, name):
    return isinstance(obj, Made) and isinstance(obj.made_by, Name) and \
        (obj.made_by.module, obj.made_by.name) == (module, name)


class _Walker(pickle._Unpickler):
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, found):
        super().__init__(file, encoding="latin1")
        self.file = file
        self.found = found

    def find_class(self, module, name):
        self.found["modules"].add(str(module).split(".")[0])
        return Name(module, name)

    def persistent_load(self, pid):
        raise UnreadableStream("the stream uses persistent ids (not a joblib or pickle file)")

    def load_reduce(self):
        args = self.stack.pop()
        self.stack[-1] = Made(self.stack[-1], args)

    def load_newobj(self):
        args = self.stack.pop()
        self.stack[-1] = Made(self.stack[-1], args)

    def load_newobj_ex(self):
        self.stack.pop()
        args = self.stack.pop()
        self.stack[-1] = Made(self.stack[-1], args)

    def load_inst(self):
        module = self.readline()[:-1].decode("ascii")
        name = self.readline()[:-1].decode("ascii")
        self.append(Made(self.find_class(module, name), tuple(self.pop_mark())))

    def load_obj(self):
        args = self.pop_mark()
        self.append(Made(args[0], tuple(args[1:])))

    def load_ext(self, *_):
        raise UnreadableStream("the stream uses the extension registry")

    def load_build(self):
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = state[0]  # (dict state, slots state)
        if isinstance(state, dict):
            version = state.get(VERSION_KEY)
            if isinstance(version, str):
                self.found["versions"].add(version)
        if isinstance(target, Made):
            target.state = state
            if _is(target, *_WRAPPER):
                self._skip_array(state)

    def _skip_array(self, state):
        """Step over the array bytes joblib wrote after this wrapper."""
        if not isinstance(state, dict):
            raise UnreadableStream("a joblib array without its metadata")
        dtype, shape = state.get("dtype"), state.get("shape")
        if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
            raise UnreadableStream("a joblib array of shape %.60r" % (shape,))
        itemsize, has_objects = _dtype_size(dtype)
        if has_objects:
            _Walker(self.file, self.found).load()  # a nested pickle of the array
            return
        if state.get("numpy_array_alignment_bytes") is not None:
            padding = self.file.read(1)
            if len(padding) != 1:
                raise UnreadableStream("the stream ends inside a joblib array")
            _skip(self.file, padding[0])
        _skip(self.file, math.prod(shape) * itemsize)

    for code, method in ((pickle.REDUCE, load_reduce), (pickle.NEWOBJ, load_newobj),
                         (pickle.NEWOBJ_EX, load_newobj_ex), (pickle.INST, load_inst),
                         (pickle.OBJ, load_obj), (pickle.BUILD, load_build),
                         (pickle.EXT1, load_ext), (pickle.EXT2, load_ext),
                         (pickle.EXT4, load_ext)):
        dispatch[code[0]] = method
    del code, method


def _dtype_size(dtype):
    """``(itemsize, holds objects)`` of a pickled ``numpy.dtype``, from the
    arguments and state numpy writes (``('f8', False, True)``, then a state
    whose sixth item is the size when the type string does not say it)."""
    if not (_is(dtype, "numpy", "dtype") and dtype.args and isinstance(dtype.args[0], str)):
        raise UnreadableStream("a joblib array whose dtype is not numpy's")
    typestr, state = dtype.args[0], dtype.state
    if not (isinstance(state, tuple) and len(state) >= 8):
        raise UnreadableStream("a joblib array's dtype %s without its state" % typestr)
    flags, elsize = state[7], state[5]
    has_objects = typestr.startswith("O") or (isinstance(flags, int) and flags & 1)
    if isinstance(elsize, int) and elsize > 0:
        return elsize, bool(has_objects)
    digits = re.search(r"\d+", typestr)
    if not digits:
        raise UnreadableStream("a joblib array of dtype %s" % typestr)
    return int(digits.group()), bool(has_objects)


def _skip(file, n):
    while n > 0:
        chunk = file.read(min(n, _SKIP_CHUNK))
        if not chunk:
            raise UnreadableStream("the stream ends inside a joblib array")
        n -= len(chunk)


def walk(path):
    """``{"versions": {...}, "modules": {...}}``: the scikit-learn versions
    recorded in the artifact's estimators and the top-level modules its
    globals name. UnreadableStream when it cannot be walked."""
    found = {"versions": set(), "modules": set()}
    with open(path, "rb") as raw:
        try:
            with _opened(raw, str(path)) as stream:
                _Walker(stream, found).load()
        except UnreadableStream:
            raise
        except Exception as exc:  # a truncated or foreign stream
            raise UnreadableStream("%s: %s" % (type(exc).__name__, str(exc)[:200])) from None
    return found


@contextlib.contextmanager
def _opened(raw, name):
    """joblib's own reader, which tells a compressed file by its magic
    bytes (named differently across joblib releases)."""
    from joblib import numpy_pickle_utils as utils
    if hasattr(utils, "_validate_fileobject_and_memmap"):
        with utils._validate_fileobject_and_memmap(raw, name, None) as (stream, _):
            yield stream
    else:
        with utils._read_fileobject(raw, name, None) as stream:
            yield stream


def read(path):
    """The scikit-learn version that saved the artifact at ``path``, or
    None when no estimator in it records one (or the stream cannot be
    walked: the loader then decides). Several versions in one artifact
    (estimators pickled apart and combined) are reported as the newest."""
    try:
        versions = walk(path)["versions"]
    except (UnreadableStream, OSError):
        return None
    if not versions:
        return None
    return max(versions, key=_version_key)


def _version_key(version):
    return tuple(int(p) if p.isdigit() else 0 for p in re.split(r"[.+-]", version))
