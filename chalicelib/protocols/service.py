"""The one object every protocol is handed: the frozen :class:`Config` of
the process and the served model, loaded once (Lambda's init phase, or the
first request under ``chalice local``). Protocols call its public methods
and the model's; nothing here imports Chalice or knows a protocol."""
import os
import sys

from chalicelib.http.config import Config
from chalicelib.http.reply import read_body
from chalicelib.ops import metrics
from chalicelib.runtimes.served_model import ServedModel
from chalicelib.schema.card import CardError, ModelCard

# The project root: chalicelib/protocols/ is two levels below it.
BUNDLED_MODEL_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "model")


class Service:
    def __init__(self, config):
        self.config = config
        self.model = ServedModel(config.model_dir, config.model_runtime)

    def read_body(self, request):
        """The request's body (bytes) within the configured size limit."""
        return read_body(request, self.config.max_body_bytes)

    def displayed_card(self):
        """``(ModelCard, None)`` of the served model for the documents a
        person reads (read from disk when the model is not loaded yet), or
        ``(None, reason)`` when the card cannot be read."""
        if self.model.card is not None:
            return self.model.card, None
        try:
            return ModelCard.read(self.config.model_dir), None
        except CardError as exc:
            return None, "model card unavailable: %s" % exc


def from_environment(env=None):
    """The service the Lambda runs, with its model loaded now (the init
    phase) unless Chalice's CLI is only importing the app (it sets
    AWS_CHALICE_CLI_MODE for every command, ``chalice local`` included, which
    then loads on the first request)."""
    env = os.environ if env is None else env
    service = Service(Config.from_env(env, BUNDLED_MODEL_DIR))
    if service.config.problem:
        service.model.fail(service.config.problem)
    elif not env.get("AWS_CHALICE_CLI_MODE"):
        service.model.load()
    if service.model.error:  # counted by the init-failure alarm
        sys.stdout.write(metrics.init_failure_line(service.model.error))
    return service
