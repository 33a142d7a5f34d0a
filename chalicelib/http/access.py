"""How the public endpoint is exposed: authentication and CORS, per stage.

Read from the stage's environment variables in ``.chalice/config.json``
(Chalice sets them when it imports the app to package or deploy it):

* ``API_AUTH``: ``none``, ``api_key`` (API Gateway API keys; the usage plan
  is a separate step, see docs/operate.md) or ``iam`` (SigV4-signed requests).
* ``CORS_ALLOW_ORIGIN``: empty (CORS off) or the one origin browsers may
  call from.

A wrong value fails the import, so ``chalice package``/``deploy`` stop
before anything ships.
"""
import os

AUTH_MODES = ("none", "api_key", "iam")


class PublicAccess:
    def __init__(self, auth, cors_origin):
        self.auth = auth
        self.cors_origin = cors_origin


def public_access(env=None):
    env = os.environ if env is None else env
    auth = (env.get("API_AUTH") or "none").strip().lower()
    if auth not in AUTH_MODES:
        raise ValueError("API_AUTH must be one of %s, got %r" % (", ".join(AUTH_MODES), auth))
    origin = (env.get("CORS_ALLOW_ORIGIN") or "").strip() or None
    return PublicAccess(auth, origin)
