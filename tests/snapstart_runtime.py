"""What Lambda's Python runtime does around SnapStart, in one process, for
tests/test_snapstart.py (run as ``python -m tests.snapstart_runtime MODE``
from the project directory, with the function's environment):

1. the init phase: import the handler module (``app``), which loads the model
   and registers hooks through ``snapshot_restore_py`` (the runtime's own
   registry, installed here from PyPI as the dev dependency
   ``snapshot-restore-py``);
2. call every registered before-snapshot hook, as the runtime does before it
   takes the snapshot;
3. "restore" twice: ``os.fork()`` gives two processes with identical memory,
   as two execution environments restored from one snapshot have; each one
   calls the after-restore hooks (MODE ``hooks``; ``none`` skips them, the
   control), draws from ``random`` and numpy's global generator and answers
   one request through the real Lambda handler.

Prints one JSON object: what init left, what the hooks returned, and each
restored copy's draws and request log record.
"""
import io
import json
import os
import random
import sys

import numpy as np
import snapshot_restore_py

from tests.proxy_event import LambdaContext, json_event


def restored_copy(app, run_after_restore, random_state):
    # os.fork() re-seeds ``random`` in the child (an at-fork hook of the
    # random module); a SnapStart restore does not: put back the state the
    # "snapshot" had.
    random.setstate(random_state)
    if run_after_restore:
        for func, args, kwargs in snapshot_restore_py.get_after_restore():
            func(*args, **kwargs)
    draws = {"random": random.random(), "numpy": float(np.random.random())}
    captured, sys.stdout = sys.stdout, io.StringIO()
    try:
        response = app.app(json_event({"instances": [[5.1, 3.5, 1.4, 0.2]]}), LambdaContext())
        lines = sys.stdout.getvalue().splitlines()
    finally:
        sys.stdout = captured
    return {"draws": draws, "status": response["statusCode"], "body": response["body"],
            "log": [json.loads(line) for line in lines if line.startswith('{"request_id"')]}


def main(mode):
    import app  # the init phase
    out = {
        "loaded_at_init": app.SERVICE.model.estimator is not None,
        "before_snapshot": [f"{f.__module__}.{f.__name__}"
                            for f, _, _ in snapshot_restore_py.get_before_snapshot()],
        "after_restore": [f"{f.__module__}.{f.__name__}"
                          for f, _, _ in snapshot_restore_py.get_after_restore()],
    }
    out["warm_up"] = [func(*args, **kwargs)
                      for func, args, kwargs in snapshot_restore_py.get_before_snapshot()]
    sys.stdout.flush()
    random_state = random.getstate()
    copies = []
    for _ in range(2):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            result = restored_copy(app, mode == "hooks", random_state)
            os.write(write_end, json.dumps(result).encode())
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            copies.append(json.loads(pipe.read()))
        os.waitpid(pid, 0)
    out["copies"] = copies
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
