"""The model in the package: where it is, its card and artifact (sha256
checked), an artifact kept in S3 fetched for the trace, and the stage
policy's S3 grant checked against the card."""
import json
import os
import sys

from chalicelib.schema.card import CardError, ModelCard
from chalicelib.http.errors import ModelLoadError
from chalicelib.runtimes.onnx_runtime import ONNX_FILE, RUNTIME as ONNX_RUNTIME
from chalicelib.runtimes.choice import chosen_runtime
from tools.build.common import MODEL_DIR, REPO_DIR, BuildError, MiB, _sha256, log


def model_dir_in_package(environment):
    configured = environment.get("MODEL_DIR")
    if not configured:
        return MODEL_DIR
    if not configured.startswith("/var/task/"):
        raise BuildError("MODEL_DIR=%s is outside the package (/var/task); the build "
                         "can only check a model inside it" % configured)
    return configured[len("/var/task/"):].strip("/")


def check_model(root, model_rel, left_out=()):
    """The model card and the artifact it names (and the ONNX graph of a
    card served by ONNX Runtime), inside the package, with a matching
    sha256, except what ``left_out`` names; returns the card."""
    model_dir = os.path.join(root, *model_rel.split("/"))
    card_path = os.path.join(model_dir, "model.json")
    if not os.path.isfile(card_path):
        raise BuildError("the package has no model card %s/model.json: publish a model "
                         "(python -m publisher.publish) and keep vendor/model/ linking to it"
                         % model_rel)
    try:
        with open(card_path, "rb") as f:
            card = json.loads(f.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BuildError("%s/model.json is not valid JSON: %s" % (model_rel, exc)) from None
    artifact = card.get("artifact", "model.joblib") if isinstance(card, dict) else None
    if isinstance(artifact, str) and artifact.startswith("s3://"):
        return card  # fetched and checked by fetch_remote_artifact
    if not isinstance(artifact, str) or "/" in artifact:
        raise BuildError("%s/model.json names no valid artifact" % model_rel)
    artifact_path = os.path.join(model_dir, artifact)
    if os.path.isfile(artifact_path):
        actual = _sha256(artifact_path)
        if actual != card.get("sha256"):
            raise BuildError("%s/%s has sha256 %s but its card says %s"
                             % (model_rel, artifact, actual, card.get("sha256")))
    elif not (left_out and artifact in left_out):
        raise BuildError("the package has no model artifact %s/%s" % (model_rel, artifact))
    if card.get("runtime") == ONNX_RUNTIME and not (left_out and ONNX_FILE in left_out):
        graph = os.path.join(model_dir, ONNX_FILE)
        onnx = card.get("onnx") if isinstance(card.get("onnx"), dict) else {}
        if not os.path.isfile(graph):
            raise BuildError("the card says the model is served by ONNX Runtime but the "
                             "package has no %s/%s" % (model_rel, ONNX_FILE))
        if _sha256(graph) != onnx.get("sha256"):
            raise BuildError("%s/%s has sha256 %s but its card says %s"
                             % (model_rel, ONNX_FILE, _sha256(graph), onnx.get("sha256")))
    return card


def served_runtime(card, environment):
    """The runtime the function will serve the model with, decided by the
    app's own rule (the card's, unless the stage's ``MODEL_RUNTIME`` names one)."""
    try:
        return chosen_runtime(ModelCard(card), environment.get("MODEL_RUNTIME"))
    except (CardError, ModelLoadError) as exc:
        raise BuildError("the model cannot be served as configured: %s" % exc) from None


def leave_out_unserved(app_dir, model_rel, card, environment):
    """The artifact the served runtime never opens stays out of the package
    (a large forest would otherwise ship twice: pickle and graph); it stays
    in the project's model directory. Returns the names left out."""
    model_dir = os.path.join(app_dir, *model_rel.split("/"))
    runtime = served_runtime(card, environment)
    unserved = ONNX_FILE if runtime != ONNX_RUNTIME else card.get("artifact", "model.joblib")
    path = os.path.join(model_dir, unserved)
    if not os.path.isfile(path):
        return ()
    log("model: served by %s; %s (%.1f KiB) stays out of the package"
        % (runtime, unserved, os.path.getsize(path) / 1024))
    os.remove(path)
    return (unserved,)


def fetch_remote_artifact(project_dir, stage, card, build_dir):
    """For a card naming its artifact in S3: check the stage policy grants
    exactly that object, then download it (the build's own AWS credentials,
    or ``AWS_ENDPOINT_URL``) into ``build/model-cache``, verified with the
    app's own code. The trace and the replay run with ``MODEL_CACHE_DIR``
    there, so the app finds the verified copy and never imports boto3: the
    package ships no boto3 (the Lambda runtime has it). Returns the path."""
    from tools.ops import model_policy
    uri = card["artifact"]
    try:
        with open(model_policy.policy_path(project_dir, stage)) as f:
            model_policy.check(json.load(f), card)
    except (model_policy.PolicyError, OSError, ValueError) as exc:
        raise BuildError(str(exc)) from None
    log("policy: the stage grants s3:GetObject on %s and no other S3 access"
        % model_policy.object_arn(uri))
    if REPO_DIR not in sys.path:
        sys.path.insert(0, REPO_DIR)
    from chalicelib.runtimes import s3_artifact as remote_artifact
    from chalicelib.http.errors import ModelLoadError
    try:
        path = remote_artifact.fetch(uri, card.get("sha256"), os.path.join(build_dir, "model-cache"))
    except ModelLoadError as exc:
        raise BuildError("the model artifact cannot be fetched for the trace: %s" % exc) from None
    log("model: artifact %s (%.1f MiB, not in the package) fetched, sha256 matches its card"
        % (uri, os.path.getsize(path) / MiB))
    return path


def check_policy_has_no_s3(project_dir, stage, card):
    """A model shipped in the package: the role needs no S3 at all."""
    from tools.ops import model_policy
    try:
        with open(model_policy.policy_path(project_dir, stage)) as f:
            model_policy.check(json.load(f), card)
    except (model_policy.PolicyError, OSError, ValueError) as exc:
        raise BuildError(str(exc)) from None
