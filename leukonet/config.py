"""Run configuration: one flat dataclass, the same for the CLI and the Python API.

``config.json`` in a run directory is ``FitConfig.to_dict()``; ``FitConfig.from_dict``
rejects unknown keys, so a typo in a hand-edited config is an error, not a silent
default.
"""
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from leukonet.errors import LeukonetError


@dataclass
class FitConfig:
    # data
    manifest: str | None = None  # CSV; its `split` column may hold train/val(/test)
    data_root: str | None = None  # folder the manifest paths are relative to
    val_manifest: str | None = None
    val_fraction: float = 0.2  # group-aware split made on the fly when no val given
    image_size: object = "default"  # "default" (backbone's), "native" or [height, width]
    batch_size: int = 32
    workers: int = 2
    cache_dir: str | None = None
    skip_bad_images: bool = False
    nucleus_crop: float = 0.0  # >0: square crop, this fraction of the short side, on the nucleus
    # augmentation (training batches only); 0 switches one off
    rotate: float = 180.0  # degrees, +-; cells have no "up"
    flip: bool = True
    zoom: float = 0.1
    shift: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1
    hue: float = 0.02
    saturation: float = 0.1
    mixup: float = 0.0  # >0: blend training pairs, images and targets, by Beta(mixup, mixup)
    # model
    backbone: str = "inception_resnet_v2"  # a registry name, or your network: "file:backbone.keras"
    backbone_preprocessing: str | None = None  # your network's input: none (RGB 0-255) | tf | torch | caffe
    head: str = "conv"
    head_filters: int = 128
    head_units: int | None = None
    dropout: float = 0.3
    weights: str = "imagenet"  # imagenet | none | shipped (pbc) | FILE.h5 | RUN_DIR | MODEL.keras
    multitask: dict | None = None  # {"name": ..., "map": {label: aux label}, "loss_weight": 0.5}
    # training
    epochs: int = 30
    lr: float = 1e-4
    lr_patience: int = 3
    lr_factor: float = 0.2
    lr_schedule: str = "plateau"  # plateau (ReduceLROnPlateau) | cosine (decay to 0 per stage)
    stop_patience: int = 8
    monitor: str = "val_loss"  # val_loss | val_accuracy: picks model.keras, drives the plateau and stop
    freeze_epochs: int = 0  # >0: head only for that many epochs, then fine-tune
    unfreeze: float = 1.0  # fine-tuning: fraction (<=1) or number (>1) of top backbone layers
    fine_tune_lr: float | None = None  # default lr / 10
    freeze_backbone: bool = False
    cache_features: bool = False  # with freeze_backbone: backbone features computed once
    feature_views: int = 1  # augmented views cached per training image (view 0: clean)
    class_weight: str | None = None  # None | "balanced"
    label_smoothing: float = 0.0
    precise_bn: int = 0  # >0: BatchNorm statistics re-estimated on this many clean batches per epoch
    ema: float = 0.0  # >0: validate and checkpoint an exponential moving average of the weights
    ensemble: int = 1  # >1: train this many members (seeds seed, seed+1, ...) and average them
    folds: int = 1  # >1: k-fold cross-validation over the train+val families; the fold models averaged
    refit: bool = False  # with folds: then one model on all rows (no validation) is the run's model
    mixed_precision: bool = False
    # None: Keras' "auto": XLA where Keras turns it on (always on JAX, whose steps otherwise
    # run op by op, 2-4x slower; on TensorFlow only with a GPU); True / False: forced
    jit: bool | None = None
    seed: int = 0
    strategy: str = "default"  # default | mirrored | multiworker | tpu
    # your own Keras callbacks, run after leukonet's and rebuilt on --resume:
    # [{"class": "module:QualName", "kwargs": {...}}] (``leukonet.train.user_callbacks``)
    callbacks: list | None = None
    # run directory
    run_dir: str | None = None  # default runs/<name>
    name: str | None = None
    overwrite: bool = False
    extra: dict = field(default_factory=dict)  # free-form notes kept with the run

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data, source="config"):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise LeukonetError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: "
                                f"{', '.join(sorted(names))}")
        return cls(**data)

    @classmethod
    def read(cls, path):
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LeukonetError(f"{path}: config not found") from None
        except ValueError as e:
            raise LeukonetError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(data, source=str(path))

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def parse_size(text):
    """``"240x320"`` → ``[240, 320]``; ``"default"``/``"native"`` pass through."""
    if isinstance(text, (list, tuple)):
        return [int(text[0]), int(text[1])]
    text = str(text).strip().lower()
    if text in ("default", "native"):
        return text
    try:
        h, w = (int(v) for v in text.split("x"))
    except ValueError:
        raise LeukonetError(f"--image-size {text!r}: expected HxW (e.g. 240x320), "
                            "'default' or 'native'") from None
    if h <= 0 or w <= 0:
        raise LeukonetError(f"--image-size {text!r}: sides must be positive")
    return [h, w]
