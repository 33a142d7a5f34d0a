"""The floor of the batch benchmark: what a user would write to score the
same file on one machine, one process, one thread: ``pandas.read_csv``
in chunks, the rows that do not parse dropped, ``model.predict`` on the
rest (the same model, its scikit-learn artifact). It reads and predicts,
and writes nothing.

    .venv/bin/python -m tools.bench.batch_floor FILE MODEL.joblib iris|dataframe
prints ``{"rows": ..., "seconds": ..., "cpu_seconds": ...}``.
"""
import json
import sys
import time

CHUNK_ROWS = 200_000


def score_file(path, model, numeric, columns, as_frame, chunksize=CHUNK_ROWS):
    """``(rows predicted, seconds, CPU seconds)`` for ``path``."""
    import numpy as np
    import pandas as pd
    started, cpu = time.perf_counter(), time.process_time()
    rows = 0
    reader = pd.read_csv(path, chunksize=chunksize, dtype=str, encoding_errors="replace",
                         on_bad_lines="skip")
    for chunk in reader:
        chunk = chunk[columns]
        for name in numeric:
            chunk[name] = pd.to_numeric(chunk[name], errors="coerce")
        chunk = chunk.dropna()
        chunk = chunk[np.isfinite(chunk[numeric].to_numpy(float)).all(axis=1)]
        if len(chunk):
            model.predict(chunk if as_frame else chunk.to_numpy(float))
            rows += len(chunk)
    return rows, time.perf_counter() - started, time.process_time() - cpu


def main(argv=None):
    path, artifact, shape = (argv or sys.argv[1:])[:3]
    import joblib
    from tools.bench.batch_file import NUMERIC, SHAPES
    model = joblib.load(artifact)
    rows, seconds, cpu = score_file(path, model, NUMERIC[shape], SHAPES[shape][0],
                               as_frame=shape == "dataframe")
    print(json.dumps({"rows": rows, "seconds": seconds, "cpu_seconds": cpu}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
