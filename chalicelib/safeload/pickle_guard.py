"""What an artifact's pickle opcodes may *do* with the globals it may name.

:mod:`chalicelib.safeload.safe_pickle` decides which names an artifact may use. Names
are not enough: ``numpy.dtype`` followed by BUILD with a crafted state
forges an object dtype over raw bytes (pointers from data: code execution),
``ndarray.__setstate__`` over a ``bytearray`` that SETITEMS later shrinks is
a use-after-free, a ufunc called on a crafted view reads any address. This
module is the second half: the unpickler's state-changing opcodes go through
a :class:`Guard`, which allows only what a pickle written by numpy, joblib
and scikit-learn does, in the canonical form they write it:

* **Calls** (REDUCE, and INST/OBJ): only the reconstruction helpers, each with
  its arguments checked (:data:`Guard._calls`), and constructors of allowed
  classes. Functions that are merely *values* in a model
  (``FunctionTransformer(func=numpy.log1p)``, ``score_func=f_classif``,
  ufuncs) are never called; nor are ``bytearray``, numpy types or ndarrays.
* **NEWOBJ**: ``cls.__new__(cls)`` of an allowed class, without arguments
  (``ndarray.__new__(ndarray, shape, dtype, buffer, offset, strides)`` would
  map an array over any buffer).
* **Arrays** are never built in place: ``_reconstruct`` yields a placeholder;
  the BUILD that follows is checked (shape, dtype, data of the exact type and
  size) and builds a *fresh* array no other object has seen, which replaces
  the placeholder on the stack and in the memo. No array can be built over a
  foreign buffer, re-built, or built after a view of it was taken.
* **Dtypes**: ``numpy.dtype(typestr, align, True)`` only (a fresh copy, never
  a shared singleton), and its BUILD state must equal the state numpy itself
  writes for the dtype the state describes: flags, offsets and sizes are
  recomputed, not trusted. Structured dtypes holding objects are refused.
* **BUILD** applies to instances of allowed classes only (never a class,
  function, builtin container or numpy scalar); **SETITEM(S)** only to dicts,
  **APPEND(S)** only to lists, **ADDITEMS** only to sets.
* **joblib arrays** (``NumpyArrayWrapper``): their metadata is checked and
  their size is charged to the load budget *before* memory is allocated;
  object arrays (a nested pickle) are read by a guarded unpickler too.

The :class:`~chalicelib.safeload.load_budget.Budget` is charged by every read and
checked at every guarded opcode, so a bomb or a hang stops with a
:class:`~chalicelib.http.errors.ModelLoadError`.
"""
import codecs
import functools
import math
import pickle
import re

import numpy as np
from joblib.numpy_pickle import NumpyArrayWrapper

from chalicelib.http.errors import ModelLoadError

_TYPESTR = re.compile(r"[<>|=]?[a-zA-Z][0-9]*\Z")
_ARRAY_SUBCLASSES_BY_JOBLIB = (np.ndarray, np.memmap)
_SCALAR_VALUES = (str, bytes, int, float, complex, bool, type(None), np.generic)


OPT_OUT = "opt out with TRUST_MODEL_PICKLE=true only for an artifact you built"


def refuse(what, why):
    raise ModelLoadError("artifact %s: %s; %s" % (what, why, OPT_OUT))


# The memory a set or a range costs per item once built (a boxed int and
# a hash slot), charged to the load's budget before it is built.
_BYTES_PER_ITEM = 64
# Integers a constructor may be given: sizes, counts and seeds, never more.
_MAX_INT_BITS = 128


def _small_ints(args, what):
    """Refuse a big integer among ``args``: a constructor's arguments are
    sizes, counts and seeds, and a million-bit one costs C time no budget
    check between opcodes can interrupt."""
    for arg in args:
        if type(arg) is int and arg.bit_length() > _MAX_INT_BITS:
            refuse(what, "an integer of %d bits (at most %d)" % (arg.bit_length(),
                                                                 _MAX_INT_BITS))


class _PendingArray:
    """What ``_reconstruct`` returns: an array that does not exist yet."""

    __slots__ = ("masked",)

    def __init__(self, masked):
        self.masked = masked


def _shape(shape, what):
    if type(shape) is not tuple or not all(type(n) is int and 0 <= n < 2 ** 62 for n in shape):
        refuse(what, "shape %r is not a tuple of non-negative ints" % (shape,))
    return shape


def _count(shape):
    return math.prod(shape)


# --------------------------------------------------------------------------
# Canonical dtypes.

def _canonical_dtype(typestr, state):
    """The dtype ``state`` describes, built by numpy from its parts; raises
    ModelLoadError unless numpy would write exactly ``typestr``/``state``."""
    if type(state) is not tuple or len(state) not in (8, 9) or state[0] not in (3, 4):
        refuse("dtype", "state %.80r is not numpy's dtype state" % (state,))
    endian, subarray, names, fields = state[1], state[2], state[3], state[4]
    candidates = []
    try:
        if subarray is not None:
            base, shape = subarray
            if not isinstance(base, np.dtype):
                refuse("dtype", "subarray base is not a dtype")
            candidates.append(np.dtype((base, _shape(shape, "dtype"))))
        elif names is not None:
            if type(names) is not tuple or type(fields) is not dict:
                refuse("dtype", "fields are not numpy's")
            spec = {"names": list(names), "formats": [], "offsets": [], "itemsize": state[5]}
            titles = []
            for n in names:
                field = fields[n]
                if type(field) is not tuple or len(field) not in (2, 3) \
                        or not isinstance(field[0], np.dtype):
                    refuse("dtype", "field %.40r is not numpy's" % (n,))
                spec["formats"].append(field[0])
                spec["offsets"].append(field[1])
                titles.append(field[2] if len(field) == 3 else None)
            if any(t is not None for t in titles):
                spec["titles"] = titles
            for align in (False, True):
                try:
                    candidates.append(np.dtype(spec, align=align))
                except (ValueError, TypeError, OverflowError):
                    pass
        elif len(state) == 9:
            meta = state[8]
            unit, num = meta[1][0], meta[1][1]
            if typestr not in ("M8", "m8") or type(unit) is not bytes or type(num) is not int:
                refuse("dtype", "metadata of %.20r is not a datetime unit" % (typestr,))
            candidates.append(np.dtype("%s%s[%d%s]" % (endian if endian in "<>" else "",
                                                         typestr, num, unit.decode("ascii"))))
        else:
            base = np.dtype(typestr)
            if endian in "<>" and base.byteorder != "|":
                base = base.newbyteorder(endian)
            candidates.append(base)
    except ModelLoadError:
        raise
    except Exception as exc:
        refuse("dtype", "state does not describe a dtype (%s)" % type(exc).__name__)
    for dtype in candidates:
        reduced = dtype.__reduce__()
        if reduced[1][0] == typestr and reduced[2] == state:
            if dtype.hasobject and dtype.type is not np.object_:
                refuse("dtype", "structured dtypes holding Python objects are not supported")
            return dtype, reduced[2]
    refuse("dtype", "state %.120r is not the canonical state of a %s dtype (forged flags, "
           "offsets or sizes)" % (state, typestr))


# --------------------------------------------------------------------------
# Arrays.

def _array_data(shape, dtype, data, what):
    """Check the data part of an array state against its shape and dtype."""
    count = _count(shape)
    if dtype.hasobject:
        if type(data) is not list or len(data) != count:
            refuse(what, "object array data is not a list of %d items" % count)
    else:
        if type(data) is not bytes:
            refuse(what, "array data is a %s, not bytes (arrays over foreign buffers are "
                   "not allowed)" % type(data).__name__)
        if len(data) != count * dtype.itemsize:
            refuse(what, "array data of %d bytes does not match shape %r of %s"
                   % (len(data), shape, dtype))


def _array_state(state, what):
    if type(state) is tuple and len(state) in (5, 7) and state[0] == 1:
        _, shape, dtype, fortran, data = state[:5]
    else:
        refuse(what, "state is not numpy's array state")
    if not isinstance(dtype, np.dtype) or type(fortran) is not bool:
        refuse(what, "state holds no dtype")
    _shape(shape, what)
    _array_data(shape, dtype, data, what)
    return shape, dtype, fortran, data


def _build_array(pending, state, budget):
    what = "masked array" if pending.masked else "array"
    shape, dtype, fortran, data = _array_state(state, what)
    budget.allocate(_count(shape) * (8 if dtype.hasobject else dtype.itemsize), what)
    if not pending.masked:
        fresh = np.ndarray((0,), "b")
        fresh.__setstate__((1, shape, dtype, fortran, data))
        return fresh
    mask, fill = state[5], state[6]
    if dtype.names is not None:
        refuse(what, "structured masked arrays are not supported")
    if type(mask) is not bytes or len(mask) != _count(shape):
        refuse(what, "mask is not %d bytes" % _count(shape))
    if not isinstance(fill, _SCALAR_VALUES):
        refuse(what, "fill value is a %s" % type(fill).__name__)
    fresh = np.ma.core._mareconstruct(np.ma.MaskedArray, np.ndarray, (0,), "b")
    fresh.__setstate__(state)
    return fresh


# --------------------------------------------------------------------------
# The guard: one per load, shared by nested unpicklers.

class Guard:
    def __init__(self, budget, is_allowed_class):
        self.budget = budget
        self._is_allowed_class = is_allowed_class
        self._fresh_dtypes = {}          # id -> dtype made by numpy.dtype(...) here
        self._calls = self._call_table()

    # Calls ----------------------------------------------------------------

    def _call_table(self):
        try:
            from numpy._core import multiarray, numeric
        except ImportError:  # numpy 1.x: a build environment of a release before 1.4.2
            from numpy.core import multiarray, numeric
        from numpy.random import _pickle as random_pickle
        from numpy.random.bit_generator import BitGenerator
        from sklearn.utils.validation import check_array

        bit_generator_ctor = getattr(random_pickle, "__bit_generator_ctor")

        def random_ctor(func):
            def check(args):
                for arg in args:
                    if not (type(arg) is str or isinstance(arg, BitGenerator)
                            or arg is bit_generator_ctor
                            or (isinstance(arg, type) and issubclass(arg, BitGenerator))):
                        refuse("random state", "constructor argument %.60r" % (arg,))
                return func(*args)
            return check

        def dtype_call(args):
            if not (len(args) == 3 and type(args[0]) is str and _TYPESTR.match(args[0])
                    and type(args[1]) is bool and args[2] is True):
                refuse("numpy.dtype", "arguments %.80r are not (typestr, align, copy=True)"
                       % (args,))
            dtype = np.dtype(args[0], args[1], True)
            self._fresh_dtypes[id(dtype)] = dtype
            return dtype

        def reconstruct(masked):
            def check(args):
                expected = ((np.ma.MaskedArray, np.ndarray, (0,), "b") if masked
                            else (np.ndarray, (0,), b"b"))
                if tuple(args) != expected or type(args[0]) is not type(expected[0]):
                    refuse("array reconstruction", "arguments %.80r" % (args,))
                return _PendingArray(masked)
            return check

        def scalar(args):
            if len(args) != 2 or not isinstance(args[0], np.dtype):
                refuse("numpy scalar", "arguments are not (dtype, data)")
            dtype, data = args
            if dtype.hasobject:
                if dtype.type is not np.object_:
                    refuse("numpy scalar", "structured scalar holding objects")
                return data
            if type(data) is not bytes or len(data) != dtype.itemsize:
                refuse("numpy scalar", "data is not %d bytes" % dtype.itemsize)
            return multiarray.scalar(dtype, data)

        def frombuffer(args):
            if len(args) != 4:
                refuse("array from buffer", "arguments")
            buf, dtype, shape, order = args
            if type(buf) not in (bytes, bytearray) or not isinstance(dtype, np.dtype) \
                    or dtype.hasobject or order not in ("C", "F"):
                refuse("array from buffer", "a %s buffer of %s" % (type(buf).__name__, dtype))
            _shape(shape, "array from buffer")
            if len(buf) != _count(shape) * dtype.itemsize:
                refuse("array from buffer", "%d bytes do not match shape %r of %s"
                       % (len(buf), shape, dtype))
            self.budget.allocate(len(buf), "array")
            return np.frombuffer(bytes(buf), dtype=dtype).reshape(shape, order=order).copy(
                order="K")

        def partial(args):
            # scikit-learn's HistGradientBoosting preprocessor stores
            # FunctionTransformer(partial(check_array, dtype=..., ...)).
            if len(args) != 1 or args[0] is not check_array:
                refuse("functools.partial", "only partial(sklearn.utils.validation.check_array)"
                       " is allowed, not partial(%.60r)" % (args[:1],))
            return functools.partial(check_array)

        def encode(args):      # protocol 2's bytes: _codecs.encode(str, "latin1")
            if len(args) != 2 or type(args[0]) is not str or args[1] not in ("latin1", "latin-1"):
                refuse("_codecs.encode", "only str to latin-1 bytes")
            self.budget.allocate(len(args[0]), "bytes")
            return args[0].encode("latin-1")

        def copy_bytes(args):  # bytearray(b"..."): a copy of bytes already read
            if len(args) != 1 or type(args[0]) is not bytes:
                refuse("builtins.bytearray", "only a copy of bytes, never a size to allocate")
            self.budget.allocate(len(args[0]), "a bytearray")
            return bytearray(args[0])

        def bounded_range(args):
            if not 1 <= len(args) <= 3 or not all(type(a) is int for a in args):
                refuse("builtins.range", "arguments are not integers")
            _small_ints(args, "builtins.range")
            built = range(*args)
            # What iterating it will build, charged before anything is built.
            self.budget.allocate(len(built) * _BYTES_PER_ITEM, "a range")
            return built

        def bounded_set(kind):
            def build(args):
                if len(args) > 1:
                    refuse("builtins.%s" % kind.__name__, "more than one argument")
                items = args[0] if args else ()
                if type(items) not in (list, tuple, set, frozenset, range):
                    refuse("builtins.%s" % kind.__name__,
                           "built from a %s, not a list, tuple, set or range"
                           % type(items).__name__)
                self.budget.allocate(len(items) * _BYTES_PER_ITEM, "a %s" % kind.__name__)
                return kind(items)
            return build

        def seed_sequence(args):
            # Its constructor converts the entropy to 32-bit words in
            # quadratic time: 2**1_400_000 would run for minutes in C.
            _small_ints(args, "numpy SeedSequence")
            for arg in args:
                if type(arg) in (list, tuple):
                    if len(arg) > 1024:
                        refuse("numpy SeedSequence", "more than 1024 entropy words")
                    _small_ints(arg, "numpy SeedSequence")
            return SeedSequence(*args)

        from numpy.random.bit_generator import SeedSequence
        table = {np.dtype: dtype_call, codecs.encode: encode, range: bounded_range,
                 set: bounded_set(set), frozenset: bounded_set(frozenset),
                 SeedSequence: seed_sequence, bytearray: copy_bytes, multiarray._reconstruct: reconstruct(False),
                 np.ma.core._mareconstruct: reconstruct(True), multiarray.scalar: scalar,
                 numeric._frombuffer: frombuffer, functools.partial: partial}
        for name in ("__bit_generator_ctor", "__randomstate_ctor", "__generator_ctor"):
            func = getattr(random_pickle, name)
            table[func] = random_ctor(func)
        return table

    def call(self, func, args):
        """REDUCE / INST / OBJ: ``func(*args)`` if this kind of call is one a
        scientific-stack pickle makes."""
        self.budget.tick()
        if type(args) is not tuple:
            refuse("call", "arguments are not a tuple")
        try:
            handler = self._calls.get(func)
        except TypeError:          # unhashable: not a function we call
            handler = None
        if handler is not None:
            return handler(args)
        name = getattr(func, "__name__", "")
        if name.startswith("__pyx_unpickle_") or name == "newObj":
            return self._cython_helper(func, name, args)
        if isinstance(func, type) and self._constructible(func):
            # A constructor of an allowed class: its integer arguments are
            # sizes and counts to native code, never big integers.
            _small_ints(args, "calls %s" % _name_of(func))
            return func(*args)
        refuse("calls %s" % _name_of(func),
               "only reconstruction helpers and constructors are called while loading "
               "(a function stored in a model is never called at load)")

    def _cython_helper(self, func, name, args):
        """Cython's ``__pyx_unpickle_<Class>(cls, checksum, state)`` and
        scikit-learn's neighbors ``newObj(cls)``: the class must be the one
        the helper is for (and allowed), so the helper only builds that."""
        cls = args[0] if args else None
        expected = name[len("__pyx_unpickle_"):] if name != "newObj" else None
        if not (isinstance(cls, type) and self._is_allowed_class(cls)
                and cls.__module__ == func.__module__
                and (expected is None or cls.__name__ == expected)):
            refuse("calls %s" % _name_of(func), "for %.60r" % (cls,))
        if expected is None and len(args) != 1:
            refuse("calls %s" % _name_of(func), "unexpected arguments")
        return func(*args)

    def _constructible(self, cls):
        return (self._is_allowed_class(cls) and not issubclass(cls, (np.ndarray, np.generic,
                                                                     np.dtype, bytearray))
                and cls is not np.ufunc)

    def new(self, cls, args, kwargs):
        """NEWOBJ / NEWOBJ_EX: ``cls.__new__(cls)``; no arguments (numpy's
        ``ndarray.__new__`` with a buffer would map memory)."""
        self.budget.tick()
        if not isinstance(cls, type) or not self._constructible(cls) or args or kwargs:
            refuse("creates %s" % _name_of(cls),
                   "only allowed classes, without constructor arguments, may be created")
        return cls.__new__(cls)

    # BUILD ------------------------------------------------------------------

    def build(self, unpickler, obj, state):
        """BUILD: the object that replaces ``obj`` on the stack."""
        self.budget.tick()
        if type(obj) is _PendingArray:
            array = _build_array(obj, state, self.budget)
            memo = unpickler.memo
            for key, value in memo.items():
                if value is obj:
                    memo[key] = array
            return array
        if isinstance(obj, np.dtype):
            if self._fresh_dtypes.pop(id(obj), None) is not obj:
                refuse("dtype", "BUILD on a dtype not created just before (shared or rebuilt)")
            _, canonical_state = _canonical_dtype(obj.__reduce__()[1][0], state)
            obj.__setstate__(canonical_state)
            return obj
        if type(obj) is functools.partial:
            self._build_partial(obj, state)
            return obj
        if type(obj) is NumpyArrayWrapper:
            return self._read_joblib_array(unpickler, obj, state)
        if isinstance(obj, (type, np.ndarray, np.generic, np.ufunc, np.dtype)) \
                or not self._constructible(type(obj)):
            refuse("sets the state of %s" % _name_of(type(obj)),
                   "BUILD is only allowed on instances of allowed classes")
        for part in (state if type(state) is tuple and len(state) == 2 else (state,)):
            if isinstance(part, dict) and any(
                    not isinstance(k, str) or (k.startswith("__") and k.endswith("__"))
                    for k in part):
                refuse("sets the state of %s" % _name_of(type(obj)),
                       "state keys must be plain attribute names (no __class__, __dict__...)")
        unpickler.stack.append(obj)
        unpickler.stack.append(state)
        pickle._Unpickler.load_build(unpickler)
        return unpickler.stack.pop()

    def _build_partial(self, obj, state):
        from sklearn.utils.validation import check_array
        if not (type(state) is tuple and len(state) == 4 and state[0] is check_array
                and state[1] == () and (state[3] is None or state[3] == {})
                and type(state[2]) is dict
                and set(state[2]) <= {"dtype", "ensure_all_finite", "force_all_finite",
                                      "accept_sparse", "ensure_2d", "copy", "order"}):
            refuse("functools.partial", "state other than partial(check_array, **options)")
        obj.__setstate__(state)

    def _read_joblib_array(self, unpickler, wrapper, state):
        allowed = {"subclass", "shape", "order", "dtype", "allow_mmap",
                   "numpy_array_alignment_bytes"}
        if type(state) is not dict or not set(state) <= allowed or "dtype" not in state:
            refuse("joblib array", "metadata is not joblib's")
        subclass, shape, dtype = state.get("subclass"), state.get("shape"), state["dtype"]
        if subclass not in _ARRAY_SUBCLASSES_BY_JOBLIB or not isinstance(dtype, np.dtype) \
                or state.get("order") not in ("C", "F") \
                or state.get("numpy_array_alignment_bytes") not in (None, 16):
            refuse("joblib array", "metadata %.120r" % (state,))
        _shape(shape, "joblib array")
        wrapper.__dict__.update(state)
        wrapper.subclass = np.ndarray
        wrapper.allow_mmap = False
        self.budget.allocate(_count(shape) * (8 if dtype.hasobject else dtype.itemsize),
                             "a joblib array")
        if not dtype.hasobject:
            return wrapper.read(unpickler, unpickler.ensure_native_byte_order)
        if dtype.type is not np.object_:
            refuse("joblib array", "structured arrays holding objects are not supported")
        # joblib reads object arrays with a fresh, unguarded Unpickler: read
        # them with a guarded one sharing this guard and find_class.
        inner = unpickler.nested(unpickler.file_handle)
        array = inner.load()
        if type(array) is not np.ndarray or array.shape != shape or array.dtype != dtype:
            refuse("joblib array", "nested object array does not match its metadata")
        return array

    # Containers -------------------------------------------------------------

    @staticmethod
    def container(obj, kind, opcode):
        if not isinstance(obj, kind):
            refuse("uses %s on %s" % (opcode, _name_of(type(obj))),
                   "only on a %s" % kind.__name__)


def _name_of(obj):
    module = getattr(obj, "__module__", None) or type(obj).__module__
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) \
        or type(obj).__name__
    return ("%s.%s" % (module, name))[:120]


def _marked(unpickler):
    """The object under the topmost MARK (what SETITEMS & co. update)."""
    try:
        return unpickler.metastack[-1][-1]
    except IndexError:
        refuse("stream", "a MARK opcode without an object under it")


def install(dispatch):
    """Route the state-changing opcodes of an unpickler's ``dispatch`` (a
    copy owned by its class) through ``self.guard``."""
    def load_reduce(self):
        stack = self.stack
        args = stack.pop()
        stack[-1] = self.guard.call(stack[-1], args)

    def load_newobj(self):
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self.guard.new(cls, args, {}))

    def load_newobj_ex(self):
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self.guard.new(cls, args, kwargs))

    def load_build(self):
        state = self.stack.pop()
        self.stack[-1] = self.guard.build(self, self.stack[-1], state)

    def load_setitem(self):
        Guard.container(self.stack[-3], dict, "SETITEM")
        pickle._Unpickler.load_setitem(self)

    def load_setitems(self):
        Guard.container(_marked(self), dict, "SETITEMS")
        pickle._Unpickler.load_setitems(self)

    def load_append(self):
        Guard.container(self.stack[-2], list, "APPEND")
        pickle._Unpickler.load_append(self)

    def load_appends(self):
        Guard.container(_marked(self), list, "APPENDS")
        pickle._Unpickler.load_appends(self)

    def load_additems(self):
        Guard.container(_marked(self), set, "ADDITEMS")
        pickle._Unpickler.load_additems(self)

    for opcode, handler in ((pickle.REDUCE, load_reduce), (pickle.NEWOBJ, load_newobj),
                            (pickle.NEWOBJ_EX, load_newobj_ex), (pickle.BUILD, load_build),
                            (pickle.SETITEM, load_setitem), (pickle.SETITEMS, load_setitems),
                            (pickle.APPEND, load_append), (pickle.APPENDS, load_appends),
                            (pickle.ADDITEMS, load_additems)):
        dispatch[opcode[0]] = handler
