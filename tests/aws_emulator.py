"""An AWS emulator on loopback for the deploy lifecycle test.

moto's standalone server (``moto[server]``) runs in this process, in a thread,
bound to 127.0.0.1 on a free port; ``chalice`` runs as a subprocess with an
environment that can only reach it:

* ``AWS_ENDPOINT_URL`` points every botocore client at the emulator (botocore
  >= 1.31 honours it, and Chalice creates its clients from a plain botocore
  session, so it does not bypass it). Every other ``AWS_*`` variable of the
  calling environment is dropped, so a service-specific override
  (``AWS_ENDPOINT_URL_LAMBDA``...), a profile or real credentials cannot leak
  in; the shared config and credentials files are empty files.
* Credentials are fake; the instance metadata service is disabled.
* ``HTTP(S)_PROXY`` point at a closed loopback port with ``NO_PROXY`` for the
  loopback addresses only: a request to any other host fails at once instead
  of leaving the machine.

moto cannot run the function's code (that needs Docker, and is proven by the
package test instead); creating, updating and deleting functions does not.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
FAKE_KEY_ID = "AKIAFAKEFAKEFAKEFAKE"
FAKE_SECRET = "fake-secret-for-the-loopback-emulator"
# Nothing listens on the discard port: a request that escapes NO_PROXY fails.
DEAD_PROXY = "http://127.0.0.1:9"


# --- The emulator patches ---------------------------------------------------
# moto 5.2.5's API Gateway differs from the real service in two ways that stop
# `chalice deploy` at its first API Gateway call. Both are emulator bugs (real
# API Gateway accepts Chalice's document on import and on put); the patches
# below change nothing else, and Chalice and the app are never patched.


def _import_rest_api(original):
    # ImportRestApi: moto reads api_doc["info"]["description"] unconditionally,
    # so a document without a description (Chalice never writes one; the field
    # is optional in Swagger 2.0 and OpenAPI 3) raises KeyError -> HTTP 500.
    # Give it the absent description as None, which is what CreateRestApi
    # stores when no description is sent.
    def import_rest_api(self, api_doc: dict[str, Any], fail_on_warnings: bool):
        info = api_doc.get("info", {})
        if "description" not in info:
            api_doc = {**api_doc, "info": {**info, "description": None}}
        return original(self, api_doc, fail_on_warnings)

    return import_rest_api


def _put_rest_api(original):
    # PutRestApi (also called by moto's own ImportRestApi): moto rejects every
    # Swagger 2.0 document ("Only OpenAPI 3.x.x are currently supported"), but
    # Chalice sends Swagger 2.0, which real API Gateway imports. The part of
    # the document moto reads (paths, methods, x-amazon-apigateway-integration,
    # responses) has the same shape in both versions, so hide the version key
    # from moto's check and let it import the rest unchanged.
    def put_rest_api(self, function_id, api_doc, fail_on_warnings, mode="merge"):
        if str(api_doc.get("swagger", "")).startswith("2."):
            api_doc = {k: v for k, v in api_doc.items() if k != "swagger"}
        return original(self, function_id, api_doc, fail_on_warnings, mode=mode)

    return put_rest_api


@contextlib.contextmanager
def patched_moto() -> Iterator[None]:
    from moto.apigateway.models import APIGatewayBackend

    with mock.patch.object(
        APIGatewayBackend,
        "import_rest_api",
        _import_rest_api(APIGatewayBackend.import_rest_api),
    ), mock.patch.object(
        APIGatewayBackend,
        "put_rest_api",
        _put_rest_api(APIGatewayBackend.put_rest_api),
    ):
        yield


# --- The emulator -----------------------------------------------------------


class Emulator:
    """moto on 127.0.0.1, and the environment/clients that talk only to it."""

    def __init__(self, server, endpoint_url: str, config_dir: Path):
        self._server = server
        self.endpoint_url = endpoint_url
        self._config_dir = config_dir

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment for a subprocess that may only reach the emulator."""
        base = dict(os.environ if base is None else base)
        env = {
            k: v
            for k, v in base.items()
            if not k.upper().startswith("AWS_")
            and k.lower() not in {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
        }
        empty = self._config_dir / "empty"
        env.update(
            AWS_ENDPOINT_URL=self.endpoint_url,
            AWS_ACCESS_KEY_ID=FAKE_KEY_ID,
            AWS_SECRET_ACCESS_KEY=FAKE_SECRET,
            AWS_DEFAULT_REGION=REGION,
            AWS_REGION=REGION,
            AWS_EC2_METADATA_DISABLED="true",
            AWS_CONFIG_FILE=str(empty),
            AWS_SHARED_CREDENTIALS_FILE=str(empty),
            HTTP_PROXY=DEAD_PROXY,
            HTTPS_PROXY=DEAD_PROXY,
            http_proxy=DEAD_PROXY,
            https_proxy=DEAD_PROXY,
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )
        return env

    def client(self, service: str):
        import boto3

        session = boto3.session.Session(
            aws_access_key_id=FAKE_KEY_ID,
            aws_secret_access_key=FAKE_SECRET,
            region_name=REGION,
        )
        return session.client(service, endpoint_url=self.endpoint_url)


@contextlib.contextmanager
def running_emulator() -> Iterator[Emulator]:
    """Start moto (patched) on a free 127.0.0.1 port; stop it on exit."""
    from moto.server import ThreadedMotoServer

    with patched_moto(), tempfile.TemporaryDirectory(prefix="aws-emulator-") as tmp:
        config_dir = Path(tmp)
        (config_dir / "empty").write_text("")
        # Port 0: the OS picks a free port, no race with other test runs.
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        # One access-log line per request is noise in a failing test's output.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server.start()
        try:
            host, port = server.get_host_and_port()
            assert host == "127.0.0.1", host
            yield Emulator(server, f"http://127.0.0.1:{port}", config_dir)
        finally:
            server.stop()
