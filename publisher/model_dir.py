"""One model, one directory: where ``--name`` puts a published model
(``model/NAME/``), whether publishing may write there, and the swap that
replaces a model directory as a whole, so that no file of an earlier model
(a graph, shipped code) survives next to a new card, and no other model's
directory is ever touched."""
import os
import re
import shutil
import tempfile

from chalicelib.safeload import user_code
from chalicelib.schema.card import ARTIFACT_FILE, CARD_FILE
from chalicelib.runtimes.onnx_runtime import ONNX_FILE

#: A model's name as a directory name: no separators, no dot-dot, no hidden files.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
#: What a publisher writes into a model directory; ``--force`` replaces a
#: directory holding only these, never one holding anything else.
MODEL_FILES = frozenset({ARTIFACT_FILE, CARD_FILE, ONNX_FILE, user_code.CODE_DIR})
_STAGING = ".publishing-"


class ModelDirError(ValueError):
    """Publishing may not write that directory; the message says what to do."""


def directory_for(name, models_dir):
    """``models_dir``/``name``, for a name that is a plain directory name."""
    if not isinstance(name, str) or not NAME.match(name) or ".." in name:
        raise ModelDirError("--name %r cannot name a model directory (letters, digits, '.', "
                            "'_' and '-', starting with a letter or digit); or give --out DIR"
                            % (name,))
    return os.path.join(models_dir, name)


def check_writable(out_dir, force):
    """Refuse to publish over an existing model unless ``force``; refuse,
    even with ``force``, a directory that holds anything but a model."""
    if not os.path.lexists(out_dir):
        return
    if not os.path.isdir(out_dir) or os.path.islink(out_dir):
        raise ModelDirError("%s exists and is not a model directory" % out_dir)
    entries = sorted(os.listdir(out_dir))
    if not entries:
        return
    if not force:
        raise ModelDirError(
            "%s already holds a model (%s); publishing never replaces one: give another "
            "--name, or --force to replace this directory (and only it)"
            % (out_dir, _describe(out_dir)))
    foreign = [e for e in entries if e not in MODEL_FILES]
    if foreign:
        raise ModelDirError("%s holds files a model directory does not (%s): not replaced, "
                            "even with --force; give --out a directory of its own"
                            % (out_dir, ", ".join(foreign[:5])))


def _describe(out_dir):
    import json
    try:
        with open(os.path.join(out_dir, CARD_FILE)) as f:
            card = json.load(f)
        return "%s %s" % (card.get("name"), card.get("version"))
    except (OSError, ValueError, AttributeError):
        return "no readable card"


def staging_dir(out_dir):
    """A fresh directory beside ``out_dir`` (same file system: the swap is a
    rename) to write the new model into."""
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    path = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(out_dir) + _STAGING)
    os.chmod(path, 0o755)  # mkdtemp's 0700 would ship unreadable to Lambda's user
    return path


def install(staged, out_dir):
    """Put the staged model in place of ``out_dir`` (which
    :func:`check_writable` allowed), then remove the replaced one."""
    out_dir = os.path.abspath(out_dir)
    old = None
    if os.path.lexists(out_dir):
        old = tempfile.mkdtemp(dir=os.path.dirname(out_dir),
                               prefix="." + os.path.basename(out_dir) + ".replaced-")
        os.rmdir(old)
        os.rename(out_dir, old)
    try:
        os.rename(staged, out_dir)
    except OSError:
        if old is not None:
            os.rename(old, out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def discard(staged):
    shutil.rmtree(staged, ignore_errors=True)
