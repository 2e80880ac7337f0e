"""Run directory: layout, creation rules, a lock, and the Run handle the API returns.

``runs/<name>/`` holds config.json, the manifests used, history.csv, model.keras (best),
last.keras, summary.txt, metrics.json, train.log and backup/ (for --resume). Every file
goes through ``leukonet.io``'s atomic writes.

May import: leukonet.errors, leukonet.config, leukonet.data, leukonet.models and
leukonet.evaluate (the last ones inside the Run methods); nothing from leukonet.train.
"""
import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd

from leukonet.errors import LeukonetError

FILES = dict(config="config.json", model="model.keras", last="last.keras", history="history.csv",
             summary="summary.txt", metrics="metrics.json", log="train.log", state="state.json",
             train_manifest="train_manifest.csv", val_manifest="val_manifest.csv")


def default_run_dir(config, root="runs"):
    from leukonet.models.user_backbone import label

    name = config.name or f"{label(config.backbone)}-{config.head}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(root) / name


class RunDir:
    def __init__(self, path):
        self.path = Path(path)

    def __getattr__(self, key):
        if key in FILES:
            return self.path / FILES[key]
        raise AttributeError(key)

    @property
    def backup(self):
        return self.path / "backup"

    def prepare(self, overwrite=False, resume=False):
        """Create the folder; refuse a non-empty one unless overwriting or resuming. A run
        that failed or was killed before finishing an epoch holds nothing to keep: it is
        replaced without --overwrite."""
        if self.path.exists() and any(self.path.iterdir()) and not resume:
            unfinished = self.config.is_file() and not self.finished_epochs() \
                and not self.metrics.is_file() and not (self.path / "members").exists()
            if not overwrite and not unfinished:
                raise LeukonetError(f"{self.path}: run directory is not empty; pass --overwrite to "
                                    f"replace it, --resume {self.path} to continue it, or another --name")
            owner = self.lock_owner()
            if owner:
                raise LeukonetError(f"{self.path}: in use by process {owner}; wait for it or stop it")
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()

    def lock_owner(self):
        """The live process holding this run's lock, or None."""
        try:
            pid = (self.path / ".lock").read_text().strip()
        except OSError:
            return None
        return int(pid) if pid.isdigit() and _alive(int(pid)) else None

    def _lock(self):
        lock = self.path / ".lock"
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner = self.lock_owner()
            if owner:
                raise LeukonetError(f"{self.path}: in use by process {owner}; wait for it or stop it") from None
            lock.unlink(missing_ok=True)  # left by a killed run
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)

    def unlock(self):
        (self.path / ".lock").unlink(missing_ok=True)

    def read_state(self):
        return json.loads(self.state.read_text()) if self.state.is_file() else {}

    def finished_epochs(self):
        """Epochs this run has finished (0 for a run killed or failed in its first)."""
        return int(self.read_state().get("last_epoch", 0))


def read_history(path) -> pd.DataFrame:
    """history.csv, or an empty table when it is missing or empty (Keras' CSVLogger
    creates the file when training starts and writes its first row after an epoch)."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    return pd.read_csv(path)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


class Run:
    """A finished (or interrupted) run: ``config``, ``history``, ``metrics``, ``model``."""

    def __init__(self, path):
        from leukonet.models import weights as shipped

        named = shipped.named(path)  # `pbc`, unless a run folder of that name is here
        self.shipped = str(path) if named else None  # the name as given (pbc)
        self.dir = RunDir(shipped.folder(named) if named else path)
        if not self.dir.config.is_file():
            raise LeukonetError(f"{path}: not a leukonet run directory (no config.json)")
        from leukonet.config import FitConfig

        self.config = FitConfig.read(self.dir.config)
        self._model = None

    @property
    def path(self):
        return self.dir.path

    @property
    def out_dir(self) -> Path:
        """Where outputs go by default (eval/, report.html, export/): the run folder, or for
        shipped weights (inside the installed package) a folder of their name here."""
        return Path(self.shipped) if self.shipped else self.path

    @property
    def history(self) -> pd.DataFrame:
        return read_history(self.dir.history)

    @property
    def metrics(self) -> dict:
        return json.loads(self.dir.metrics.read_text()) if self.dir.metrics.is_file() else {}

    @property
    def model(self):
        if self._model is None:
            self._model = load_model(self.dir.model)
        return self._model

    @property
    def classes(self):
        from leukonet.evaluate.evaluate import run_classes

        return run_classes(self.path)

    def evaluate(self, manifest, data_root, tta=0, figures=True, out_dir=None):
        """Metrics, tables and figures (matplotlib, shown inline in a notebook), written to
        ``out_dir`` (default ``RUN/eval/<manifest name>/``)."""
        from leukonet.evaluate.evaluate import evaluate

        return evaluate(self, manifest, data_root, tta=tta, figures=figures, out_dir=out_dir)

    def predict(self, images=None, manifest=None, data_root=None, tta=0, min_confidence=0.0,
                max_pixels=None):
        """A DataFrame: one row per image with the predicted label and probabilities, and
        (when the run describes its training images: ``domain``) each image's
        ``domain_score`` and ``out_of_domain`` flag."""
        from leukonet.evaluate.predict import predict_with

        from leukonet.data.views import run_views

        return predict_with(self.model, self.classes, run_views(self.config), images=images,
                            manifest=manifest, data_root=data_root, tta=tta,
                            min_confidence=min_confidence, max_pixels=max_pixels,
                            domain=self.domain, featured=self._featured_if_checked())

    @property
    def featured_model(self):
        """The model with its penultimate features as a second output (the domain check's
        input), made once per Run; None where they cannot be reached."""
        if getattr(self, "_featured", None) is None:
            from leukonet.evaluate.domain import with_features

            self._featured = with_features(self.model)
        return self._featured

    def _featured_if_checked(self):
        return self.featured_model if self.domain is not None else None

    @property
    def domain(self):
        """The description of the training images in feature space (``domain.npz``) that
        the out-of-domain check compares with, or None (a run made before it existed:
        ``calibrate()`` adds it). Read once per Run, like the model."""
        if not hasattr(self, "_domain"):
            from leukonet.evaluate.domain import Domain

            self._domain = Domain.load(self.path)
        return self._domain

    def calibrate(self, data_root=None, train_manifest=None, val_manifest=None):
        """Compute and store ``domain.npz`` from the run's training and validation images."""
        from leukonet.evaluate.domain import describe_run

        self._domain = describe_run(self, data_root, train_manifest, val_manifest)
        return self._domain

    def explain(self, images, out_dir=None, max_pixels=None):
        """Grad-CAM overlays; returns the figure (and writes PNGs to out_dir if given)."""
        from leukonet.evaluate.explain import explain

        from leukonet.data.views import run_views

        return explain(self.model, self.classes, run_views(self.config), images, out_dir,
                       max_pixels=max_pixels, domain=self.domain,
                       featured=self._featured_if_checked())

    def export(self, format="keras", out=None):
        from leukonet.evaluate.export import export

        return export(self, format, out)

    def __repr__(self):
        acc = self.metrics.get("val_accuracy")
        return f"<Run {self.path} val_accuracy={acc if acc is None else round(acc, 4)}>"


def load_model(path):
    """A leukonet .keras model, loaded in safe mode (registers leukonet's layers first)."""
    import keras

    import leukonet.models.preprocessing  # noqa: F401 - registers Preprocess

    path = Path(path)
    if not path.is_file():
        raise LeukonetError(f"{path}: no model here (did the run finish an epoch?)")
    try:
        # safe_mode=True always: a .keras file must not run code it carries.
        return keras.saving.load_model(path, safe_mode=True)
    except ValueError as e:
        if "Lambda" in str(e) or "safe_mode" in str(e):
            raise LeukonetError(f"{path}: refused: the model holds a Lambda layer (code inside the "
                                "file); leukonet loads models in Keras safe mode only") from None
        raise LeukonetError(f"{path}: cannot load the model ({str(e).splitlines()[0]})") from None
    except (OSError, KeyError) as e:
        raise LeukonetError(f"{path}: not a readable .keras model ({e})") from None


def load_run(path) -> Run:
    return Run(path)
