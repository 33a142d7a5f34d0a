"""A tiny pickle assembler: expressions to pickle opcodes.

Used by ``tests/malicious.py`` (and the guard's rule tests) to write
payloads that name exactly the globals they mean to, in the order they mean
to, with opcodes no pickler would emit (BUILD on a shared object, SETITEMS on
an array, NEWOBJ with a buffer, BYTEARRAY8 announcing GiBs).
"""
import pickle
import struct


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


class ByteArray(bytes):
    """A bytearray made by protocol 5's BYTEARRAY8 (no global named); with
    ``claimed`` the opcode announces that many bytes (and none follow)."""

    claimed = None


class SetItems:
    """``obj[key] = value`` for each pair, by SETITEMS on ``obj``."""

    def __init__(self, obj, *pairs):
        self.obj, self.pairs = obj, pairs


class NewObj:
    """``cls.__new__(cls, *args)`` through NEWOBJ."""

    def __init__(self, cls, *args):
        self.cls, self.args = cls, args


def _emit(x, out):
    if isinstance(x, ByteArray):
        size = len(x) if x.claimed is None else x.claimed
        out.append(pickle.BYTEARRAY8 + struct.pack("<Q", size) + bytes(x))
    elif isinstance(x, SetItems):
        _emit(x.obj, out)
        out.append(pickle.MARK)
        for key, value in x.pairs:
            _emit(key, out)
            _emit(value, out)
        out.append(pickle.SETITEMS)
    elif isinstance(x, NewObj):
        _emit(x.cls, out)
        _emit(tuple(x.args), out)
        out.append(pickle.NEWOBJ)
    elif isinstance(x, tuple):
        out.append(pickle.MARK)
        for item in x:
            _emit(item, out)
        out.append(pickle.TUPLE)
    elif isinstance(x, G):
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
    elif type(x) is bytes:
        out.append(pickle.BINBYTES + struct.pack("<I", len(x)) + x)
    elif x is None:
        out.append(pickle.NONE)
    elif x is True or x is False:
        out.append(pickle.NEWTRUE if x else pickle.NEWFALSE)
    elif isinstance(x, int):
        out.append(pickle.INT + b"%d\n" % x)
    elif isinstance(x, float):
        out.append(pickle.BINFLOAT + struct.pack(">d", x))
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
