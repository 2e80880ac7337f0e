"""The data one run trains on: the manifests resolved into training and validation rows
(``_resolve_data``; on ``--resume`` the run's own copies, ``_resume_data``), the data paths
made absolute, the input size (``_resolve_size``), and a warning when training and
validation share images or families.

May import: numpy, pandas, leukonet.config, leukonet.errors, leukonet.data,
leukonet.models.registry and leukonet.models.user_backbone; nothing from leukonet.train.
"""
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from leukonet.config import parse_size
from leukonet.errors import LeukonetError

log = logging.getLogger("leukonet")


def _resolve_data(config):
    from leukonet.data.manifest import Manifest

    if not config.manifest:
        raise LeukonetError("no --manifest given; build one with `leukonet manifest build`, or "
                            "try `leukonet fit --demo`")
    root = _data_root(config)
    m = Manifest.read_csv(config.manifest, root=root)
    split = m.frame["split"].astype(str).str.lower() if m.has_splits else None
    if split is not None and split.eq("test").all():
        raise LeukonetError(f"--manifest {config.manifest}: all {len(m)} rows are test rows "
                            "(split column); train on the train manifest (e.g. train.csv) and "
                            "keep this one for `leukonet evaluate`")
    if config.val_manifest:
        val = Manifest.read_csv(config.val_manifest, root=root)
        train = m._take(np.flatnonzero(~split.isin(["val", "test"]))) if split is not None else m
    elif config.val_fraction == 0:
        # no validation: every row but the test ones trains; the last epoch is the model
        train = m._take(np.flatnonzero(~split.eq("test"))) if split is not None else m
        val = m._take([])
        log.info("no validation (val fraction 0): all %d non-test rows of %s train; model.keras "
                 "is the last epoch's", len(train), config.manifest)
    elif split is not None and split.eq("val").any():
        train = m._take(np.flatnonzero(split.eq("train")))
        val = m._take(np.flatnonzero(split.eq("val")))
    else:
        if not m.has_groups:
            raise LeukonetError(f"{config.manifest}: no `group` column to split by; pass "
                                "--val-manifest or build the manifest with `leukonet manifest build`")
        parts = m.split(val=config.val_fraction, seed=config.seed)
        train, val = parts["train"], parts["val"]
        log.info("validation: a group-aware %.0f%% split of %s (seed %d)", 100 * config.val_fraction,
                 config.manifest, config.seed)
    classes = m.classes
    if val.classes != classes and set(val.frame["label"]) - set(classes):
        extra = sorted(set(val.frame["label"]) - set(classes))
        raise LeukonetError(f"validation manifest has classes the training manifest lacks "
                            f"({', '.join(extra)}); use manifests with the same classes")
    val = _reindex(val, classes)
    missing = sorted(set(classes) - set(train.frame["label"]))
    if missing:
        raise LeukonetError(f"no training images for class(es) {', '.join(missing)}; add images or "
                            "drop the class from the manifest")
    if config.batch_size > len(train):
        raise LeukonetError(f"--batch-size {config.batch_size} is larger than the {len(train)} "
                            "training images; lower it")
    return dict(train=train, val=val, classes=classes, root=root)


def _absolute_paths(config):
    """The data paths of a new run as absolute ones: config.json then reads the same from
    any folder (``--resume``, ``evaluate`` and the members of ``--folds`` read it)."""
    changes = {k: str(Path(v).resolve()) for k in ("manifest", "val_manifest", "data_root")
               if (v := getattr(config, k))}
    return config.replace(**changes)


def _resume_data(run_dir, config):
    """On ``--resume``: the run's own copies of its manifests (train_manifest.csv,
    val_manifest.csv, classes.json), whatever folder the command runs in. Ensembles and
    cross-validation runs hold their members' copies inside the members."""
    from leukonet.data.manifest import Manifest

    if not run_dir.train_manifest.is_file() or config.folds > 1 or config.ensemble > 1:
        return _resolve_data(config)
    root = _data_root(config)
    train = Manifest.read_csv(run_dir.train_manifest, root=root)
    val = Manifest.read_csv(run_dir.val_manifest, root=root)
    return dict(train=train, val=_reindex(val, train.classes), classes=train.classes, root=root)


def _reindex(part, classes):
    from leukonet.data.manifest import Manifest

    return Manifest(part.frame.copy(), root=part.root, classes=classes)


def _data_root(config):
    if config.data_root:
        root = Path(config.data_root)
        if not root.is_dir():
            raise LeukonetError(f"--data-root {root}: no such folder")
        return root
    raise LeukonetError("no --data-root given: the folder the manifest paths are relative to")


def _warn_overlap(train, val):
    t, v = train.frame, val.frame
    shared_hash = len(set(t["sha1"]) & set(v["sha1"])) if "sha1" in t and "sha1" in v else 0
    shared_group = 0
    if train.has_groups and val.has_groups:
        shared_group = len(set(t["group"]) & set(v["group"]))
    if shared_hash or shared_group:
        log.warning("warning: training and validation share %d image hashes and %d families: "
                    "validation accuracy will be optimistic; split with `leukonet manifest split`",
                    shared_hash, shared_group)


def _resolve_size(config, data):
    from leukonet.models.registry import get_backbone
    from leukonet.models.user_backbone import is_file

    size = parse_size(config.image_size)
    if size == "default":
        if is_file(config.backbone):  # fit settles it from your network's input (user_backbone)
            raise LeukonetError("--image-size default: your own backbone has no default size; "
                                "pass --image-size HxW")
        return tuple(get_backbone(config.backbone).default_size)
    if size == "native":
        frame = pd.concat([data["train"].frame, data["val"].frame])
        sizes = frame.groupby(["height", "width"]).size()
        if len(sizes) != 1:
            common = sizes.idxmax()
            raise LeukonetError(f"--image-size native: the images have {len(sizes)} sizes (most "
                                f"common {common[0]}x{common[1]}); pass --image-size HxW")
        return tuple(int(v) for v in sizes.index[0])
    return tuple(size)
