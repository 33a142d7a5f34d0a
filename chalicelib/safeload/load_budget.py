"""The budget of one model load: bytes decompressed, bytes allocated, seconds.

A 51-byte pickle can ask for a 3 GiB allocation, a 3 MB zlib stream can
inflate to 3 GiB, and a crafted state can keep a load busy forever; on
Lambda (512 MB) any of these is an init phase killed for memory or time, in
a loop, instead of a 503. Three limits, all checked *before* the work:

* ``max_bytes``: bytes read from the (decompressed) stream and bytes of the
  arrays the unpickler is asked to allocate, each at most
  ``max(FLOOR_BYTES, EXPANSION x artifact size)`` (``MODEL_LOAD_MAX_MB``
  overrides): an uncompressed artifact reads exactly its size, a legitimate
  compressed one rarely inflates 20x, a zlib bomb ~1000x.
* ``deadline``: ``MODEL_LOAD_TIMEOUT_S`` (default 20 s) checked at every
  guarded pickle opcode and every read.
* :func:`address_space_limit`: while loading, the process's soft
  ``RLIMIT_AS`` is lowered to its current size plus the byte budget, so an
  allocation nobody checked fails as a ``MemoryError`` (a 503) instead of
  the kernel killing the process. Restored afterwards.
"""
import contextlib
import resource
import time

from chalicelib.http import config
from chalicelib.http.errors import ModelLoadError

FLOOR_BYTES = 256 * 1024 * 1024
EXPANSION = 64
MAX_MB_ENV = config.MODEL_LOAD_MAX_MB.name
TIMEOUT_ENV = config.MODEL_LOAD_TIMEOUT_S.name


class Budget:
    def __init__(self, max_bytes, timeout_s):
        self.max_bytes = int(max_bytes)
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.read_bytes = 0
        self.allocated = 0

    @classmethod
    def for_artifact(cls, size, env=None):
        max_mb = config.model_setting(config.MODEL_LOAD_MAX_MB, env)
        max_bytes = max_mb * 1024 * 1024 if max_mb else max(FLOOR_BYTES, EXPANSION * size)
        return cls(max_bytes, config.model_setting(config.MODEL_LOAD_TIMEOUT_S, env))

    def tick(self):
        if time.monotonic() > self.deadline:
            raise ModelLoadError("artifact load exceeded its time budget of %.0f s (%s)"
                                 % (self.timeout_s, TIMEOUT_ENV))

    def read(self, n):
        self.tick()
        self.read_bytes += max(n, 0)
        if self.read_bytes > self.max_bytes:
            raise ModelLoadError(
                "artifact inflates past its load budget of %d MiB (a decompression bomb, "
                "or set %s)" % (self.max_bytes >> 20, MAX_MB_ENV))

    def allocate(self, n, what):
        self.tick()
        self.allocated += n
        if self.allocated > self.max_bytes:
            raise ModelLoadError(
                "artifact asks for %s of %d MiB, past its load budget of %d MiB (set %s)"
                % (what, n >> 20, self.max_bytes >> 20, MAX_MB_ENV))


class BudgetedReader:
    """A read-only file object that charges every read to a Budget before
    reading (``read(2**40)`` is refused, not allocated)."""

    def __init__(self, raw, budget):
        self._raw = raw
        self._budget = budget

    def read(self, n=-1):
        if n is None or n < 0:
            n = self._budget.max_bytes - self._budget.read_bytes + 1
            data = self._raw.read(n)
            self._budget.read(len(data))
            return data
        self._budget.read(n)
        data = self._raw.read(n)
        self._budget.read_bytes -= n - len(data)
        return data

    def readinto(self, buffer):
        self._budget.read(len(buffer))
        return self._raw.readinto(buffer)

    def readline(self, size=-1):
        # Pickle's text opcodes; a line is bounded by what is left.
        left = self._budget.max_bytes - self._budget.read_bytes
        line = self._raw.readline(left + 1 if size is None or size < 0 else min(size, left + 1))
        self._budget.read(len(line))
        return line

    def peek(self, n=0):
        return self._raw.peek(n)

    def __getattr__(self, name):       # tell, seek, name... as the raw file has them
        return getattr(self._raw, name)


def vm_size():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return None


@contextlib.contextmanager
def address_space_limit(extra_bytes):
    """Lower the soft RLIMIT_AS to the current size + ``extra_bytes`` for the
    duration (no-op where /proc or setrlimit is unavailable)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        current = vm_size()
    except (OSError, ValueError, AttributeError):
        current = None
    if current is None:
        yield
        return
    limit = current + int(extra_bytes)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft != resource.RLIM_INFINITY and soft <= limit:
        yield
        return
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
