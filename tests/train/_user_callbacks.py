"""Users' callbacks for tests/train/test_user_objects.py, in a module of their own so that a
resumed process (``leukonet fit --resume`` run from the repository root) can import them."""
import json
from pathlib import Path

import keras

from leukonet.errors import LeukonetError


class EpochRecorder(keras.callbacks.Callback):
    """Appends a line per finished epoch to ``path``: the epoch, the logs' keys, and whether
    model.keras was already there. Stored with the run: ``get_config()`` rebuilds it."""

    def __init__(self, path, checkpoint=None):
        super().__init__()
        self.path, self.checkpoint = str(path), checkpoint

    def on_epoch_end(self, epoch, logs=None):
        line = dict(epoch=epoch, keys=sorted(logs or {}),
                    checkpoint=bool(self.checkpoint) and Path(self.checkpoint).is_file())
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def get_config(self):
        return {"path": self.path, "checkpoint": self.checkpoint}


def recorded(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


class FailAt(keras.callbacks.Callback):
    """Raises at the end of epoch ``epoch`` (0-based): a LeukonetError, or a RuntimeError.
    No ``get_config``: not stored, so a resume runs without it."""

    def __init__(self, epoch=0, kind="LeukonetError"):
        super().__init__()
        self.epoch, self.kind = epoch, kind

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            error = LeukonetError if self.kind == "LeukonetError" else RuntimeError
            raise error(f"experiment tracker offline at epoch {epoch + 1}")
