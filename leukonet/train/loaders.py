"""The loaders one run trains with: training and validation (``_loaders``, with the
multi-task targets of ``_aux``), the training rows without augmentation (precise BN, the
feature cache), and the balanced class weights (``_class_weight``).

May import: numpy, scikit-learn, leukonet.errors and leukonet.data; nothing from
leukonet.train.
"""
import logging

import numpy as np

from leukonet.errors import LeukonetError

log = logging.getLogger("leukonet")


def _aux(config, classes, frame):
    if not config.multitask:
        return None, None
    mapping = config.multitask.get("map", {})
    name = config.multitask.get("name", "aux")
    missing = [c for c in classes if c not in mapping]
    if missing:
        raise LeukonetError(f"multitask map has no entry for class(es) {', '.join(missing)}")
    aux_classes = sorted(set(mapping[c] for c in classes))
    index = {a: i for i, a in enumerate(aux_classes)}
    aux_index = frame["label"].map(lambda c: index[mapping[c]]).to_numpy()
    return aux_classes, (name, aux_index, len(aux_classes))


def _loaders(config, data, image_size):
    from leukonet.data.augment import policy_from_config
    from leukonet.data.loader import ManifestLoader

    aux_classes, train_aux = _aux(config, data["classes"], data["train"].frame)
    _, val_aux = _aux(config, data["classes"], data["val"].frame)
    common = dict(root=data["root"], image_size=image_size, batch_size=config.batch_size,
                  num_classes=len(data["classes"]), cache_dir=config.cache_dir,
                  skip_bad_images=config.skip_bad_images, workers=config.workers,
                  nucleus_crop=config.nucleus_crop, float_pixels=config.strategy == "multiworker")
    train = ManifestLoader(data["train"].frame, shuffle=True, seed=config.seed,
                           policy=policy_from_config(config), mixup=config.mixup, aux=train_aux,
                           **common)
    val = ManifestLoader(data["val"].frame, aux=val_aux, **common) if len(data["val"]) else None
    return train, val, aux_classes


def _precise_bn_loader(config, data, train):
    """Clean training batches (fixed order) for --precise-bn, or None."""
    if config.precise_bn <= 0:
        return None
    if config.strategy != "default":
        log.warning("--precise-bn is ignored with --strategy %s (it runs eagerly on one device)",
                    config.strategy)
        return None
    return _clean_train_loader(config, data, train, workers=1, shuffle=True, seed=config.seed + 1,
                               skip_bad_images=config.skip_bad_images)


def _clean_train_loader(config, data, train, workers, shuffle=False, seed=None,
                        skip_bad_images=False):
    """The training rows without augmentation: for precise BN (shuffled), and for feature
    caching (in manifest order, every row: the cache is indexed by row)."""
    from leukonet.data.loader import ManifestLoader

    return ManifestLoader(data["train"].frame, data["root"], train.image_size, train.batch_size,
                          num_classes=train.num_classes, shuffle=shuffle,
                          seed=config.seed if seed is None else seed, cache_dir=config.cache_dir,
                          skip_bad_images=skip_bad_images, workers=workers,
                          nucleus_crop=config.nucleus_crop)


def _class_weight(config, data, aux_classes):
    if not config.class_weight:
        return None
    if config.class_weight != "balanced":
        raise LeukonetError(f"--class-weight {config.class_weight!r}: only 'balanced' is supported")
    if aux_classes:
        raise LeukonetError("--class-weight is not supported with a multi-task model (Keras "
                            "applies class weights to single-output models only)")
    from sklearn.utils.class_weight import compute_class_weight

    y = data["train"].frame["label_index"].to_numpy()
    present = np.unique(y)
    weights = compute_class_weight("balanced", classes=present, y=y)
    return {int(c): float(w) for c, w in zip(present, weights)}
