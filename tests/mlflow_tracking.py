"""A real MLflow tracking server on loopback, for the MLflow tests.

``mlflow server`` (the full ``mlflow`` package) runs as a subprocess on a
free 127.0.0.1 port with a SQLite backend store and a temporary artifact
root that the server proxies (clients upload and download through it, as
they would against a shared server). No traffic leaves the machine: the
server binds loopback only and the clients are pointed at it.
"""
import contextlib
import os
import subprocess
import sys
import time
import urllib.request

from tests.conftest import free_port

MLFLOW = os.path.join(os.path.dirname(sys.executable), "mlflow")


@contextlib.contextmanager
def tracking_server(root):
    """Start ``mlflow server`` under ``root`` (a pathlib directory); yield its URI."""
    port = free_port()
    uri = "http://127.0.0.1:%d" % port
    log_path = root / "server.log"
    env = dict(os.environ, MLFLOW_TRACKING_URI="", NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost")
    with open(log_path, "w+b") as log:
        proc = subprocess.Popen(
            [MLFLOW, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", "sqlite:///%s" % (root / "mlflow.db"),
             "--artifacts-destination", str(root / "artifacts")],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(uri + "/health", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError("mlflow server did not start:\n%s"
                                       % log.read().decode()[-3000:])
                time.sleep(0.5)
            yield uri
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
