"""Checks of a run's options before any folder is made or image read (``_check_options``):
a bad value, or flags that cannot go together, is a one-line error.

May import: leukonet.config, leukonet.errors, leukonet.data and leukonet.models.user_backbone
(and the preprocessing modes); nothing from leukonet.train.
"""
from leukonet.config import parse_size
from leukonet.errors import LeukonetError


def _check_options(config):
    _check_backbone(config)
    if config.lr_schedule not in ("plateau", "cosine"):
        raise LeukonetError(f"--lr-schedule {config.lr_schedule!r}: choose plateau or cosine")
    from leukonet.data.crop import check_fraction

    if check_fraction(config.nucleus_crop) and parse_size(config.image_size) == "native":
        raise LeukonetError("--image-size native with --nucleus-crop: the crop changes the size; "
                            "pass --image-size HxW (e.g. 96x96)")
    if config.mixup < 0:
        raise LeukonetError(f"--mixup {config.mixup}: expected a Beta alpha > 0 (e.g. 0.2), or 0 "
                            "for none")
    if config.mixup and config.cache_features:
        raise LeukonetError("--mixup with --cache-features: the cache holds features of unmixed "
                            "images; drop one of them")
    if not 0 <= config.val_fraction < 1:
        raise LeukonetError(f"--val-fraction {config.val_fraction}: expected 0 <= fraction < 1 (0: "
                            "no validation)")
    if config.val_fraction == 0 and not config.val_manifest and config.cache_features:
        raise LeukonetError("--val-fraction 0 with --cache-features: the head-only path needs "
                            "validation rows; give --val-manifest or a fraction > 0")
    if config.refit and config.folds < 2:
        raise LeukonetError("--refit needs --folds K (K >= 2): it trains the final model after "
                            "cross-validation")
    if config.precise_bn < 0:
        raise LeukonetError(f"--precise-bn {config.precise_bn}: expected a number of batches >= 0")
    if config.monitor not in ("val_loss", "val_accuracy"):
        raise LeukonetError(f"--monitor {config.monitor!r}: choose val_loss or val_accuracy")
    if not 0 <= config.ema < 1:
        raise LeukonetError(f"--ema {config.ema}: expected a momentum 0 <= m < 1 (e.g. 0.99; 0: "
                            "no moving average)")
    if config.ensemble < 1:
        raise LeukonetError(f"--ensemble {config.ensemble}: expected a number of members >= 1")
    if config.folds < 1:
        raise LeukonetError(f"--folds {config.folds}: expected a number of folds >= 2 (1: no "
                            "cross-validation)")
    if config.multitask and (config.ensemble > 1 or config.folds > 1):
        flag = "--folds" if config.folds > 1 else "--ensemble"
        raise LeukonetError(f"{flag} with --multitask: the averaged model has the cell-type output "
                            "only; train the multi-task run alone, or drop --multitask")
    # a combined --folds run records ensemble=K (its model averages K members), hence "in"
    if config.folds > 1 and config.ensemble not in (1, config.folds):
        raise LeukonetError(f"--folds {config.folds} with --ensemble {config.ensemble}: the fold "
                            "models are the ensemble; drop --ensemble")


def _check_backbone(config):
    from leukonet.models.user_backbone import is_file

    mode = config.backbone_preprocessing
    if mode is None:
        return
    if not is_file(config.backbone):
        raise LeukonetError(f"--backbone-preprocessing {mode}: only for your own backbone "
                            f"(a .keras file or a keras.Model); {config.backbone} brings its own")
    from leukonet.models.preprocessing import MODES

    if mode not in MODES:
        raise LeukonetError(f"--backbone-preprocessing {mode!r}: choose one of {', '.join(MODES)}")
