"""Predictions for images, folders or manifests; test-time augmentation; differential count."""
import os
from pathlib import Path

import numpy as np
import pandas as pd

from leukonet.data import images as image_io
from leukonet.errors import LeukonetError

UNCERTAIN = "uncertain"
OUT_OF_DOMAIN = "out of domain"


def tta_views(x, n, seed=0):
    """``n`` views of a float batch: identity, flips, both flips, then seeded rotations."""
    views = [x, x[:, :, ::-1], x[:, ::-1], x[:, ::-1, ::-1]][:max(1, n)]
    if n > 4:
        from leukonet.data.augment import apply_policy, build_policy

        rotate = build_policy(rotate=180, flip=False, zoom=0, shift=0, brightness=0, contrast=0,
                              hue=0, saturation=0)
        views += [apply_policy(rotate, x, seed + k) for k in range(n - 4)]
    return views


def run_loader(config, frame, num_classes, data_root=None, batch_size=None, workers=None,
               cache_dir=None):
    """A loader feeding ``frame`` to a model of run config ``config``: the run's views (input
    size and nucleus crop), unshuffled and unaugmented, unreadable images skipped (and
    counted in ``loader.bad``). Unset arguments come from the config (the cache excepted)."""
    from leukonet.data.views import loader_for, run_views

    return loader_for(run_views(config), frame, data_root or config.data_root,
                      batch_size or config.batch_size, num_classes=num_classes,
                      skip_bad_images=True, workers=workers or config.workers, cache_dir=cache_dir)


def predict_loader(model, loader, tta=0):
    """Probabilities for each readable row of a ManifestLoader (or a MultiViewLoader, whose
    batches are one array per model input): (rows, proba[, aux])."""
    from leukonet.console import progress

    rows, probs = [], []
    bar = progress(len(loader), "predict", "batch", leave=False)
    for b in range(len(loader)):
        x, keep = loader.load_batch(b)
        bar.update()
        if not len(keep):
            continue
        inputs = [v.astype(np.float32) for v in (x if isinstance(x, list) else [x])]
        # TTA view t of every input alike (the same flips, the same seeded rotation)
        augmented = zip(*(tta_views(v, tta or 1, seed=b * 1000) for v in inputs))
        outs = [model.predict_on_batch(list(v) if len(v) > 1 else v[0]) for v in augmented]
        probs.append(_average(outs))
        rows.append(keep)
    bar.close()
    if not rows:
        bad = getattr(loader, "bad", {})
        reasons = "; ".join(f"{p}: {r}" for p, r in list(bad.items())[:3])
        raise LeukonetError("no readable image to predict" + (f" ({reasons}"
                            + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "") + ")"
                            if bad else ""))
    rows = np.concatenate(rows)
    if isinstance(probs[0], dict):
        return rows, {k: np.concatenate([p[k] for p in probs]) for k in probs[0]}
    return rows, np.concatenate(probs)


def _average(outs):
    import keras

    if isinstance(outs[0], dict):
        return {k: np.mean([keras.ops.convert_to_numpy(o[k]) for o in outs], axis=0) for k in outs[0]}
    return np.mean([keras.ops.convert_to_numpy(o) for o in outs], axis=0)


def collect_images(items):
    """Image files from paths and folders (walked recursively, sorted)."""
    files = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and image_io.is_image_name(f.name))
        elif p.exists():
            files.append(p)
        else:
            raise LeukonetError(f"{p}: no such image or folder")
    if not files:
        raise LeukonetError(f"no images found in {', '.join(map(str, items))}")
    return files


def frame_for_files(files):
    """(root, manifest-like frame) for loose files: paths relative to their common folder."""
    absolute = [os.path.abspath(f) for f in files]
    root = os.path.commonpath([os.path.dirname(a) for a in absolute])
    rel = [Path(os.path.relpath(a, root)).as_posix() for a in absolute]
    return Path(root), pd.DataFrame(dict(path=rel, label_index=0))


def predictions_table(paths, proba, classes, bad=None, min_confidence=0.0, domain_flags=None):
    """One row per image: path, prediction, confidence, (with ``domain_flags`` = (scores,
    flags): domain_score, out_of_domain), one probability column per class; unreadable
    images get an ``error`` and no prediction."""
    table = pd.DataFrame(dict(path=paths))
    table["predicted"] = [classes[i] for i in proba.argmax(axis=1)]
    table["confidence"] = proba.max(axis=1)
    if domain_flags is not None:
        table["domain_score"] = np.round(domain_flags[0], 3)
        table["out_of_domain"] = np.asarray(domain_flags[1], dtype=bool)
    if min_confidence:
        table.loc[table["confidence"] < min_confidence, "predicted"] = UNCERTAIN
    for i, c in enumerate(classes):
        table[f"p_{c}"] = proba[:, i]
    table["error"] = ""
    if bad:
        errors = pd.DataFrame(dict(path=list(bad), predicted="", error=list(bad.values())))
        table = pd.concat([table, errors], ignore_index=True)
    return table


def differential_count(table, classes):
    """Number and percentage of each cell type (plus uncertain) among predicted images;
    images flagged out of domain are counted apart, under ``out of domain``."""
    readable = table[table["error"] == ""]
    flagged = (readable["out_of_domain"].astype(bool) if "out_of_domain" in readable
               else pd.Series(False, index=readable.index))
    predicted = readable.loc[~flagged, "predicted"]
    order = list(classes) + ([UNCERTAIN] if (predicted == UNCERTAIN).any() else [])
    counts = predicted.value_counts().reindex(order, fill_value=0)
    if flagged.any():
        counts.loc[OUT_OF_DOMAIN] = int(flagged.sum())
    out = pd.DataFrame(dict(count=counts, percent=(100 * counts / max(1, counts.sum())).round(1)))
    out.index.name = "cell type"
    out.loc["total"] = [int(counts.sum()), 100.0 if counts.sum() else 0.0]
    out["count"] = out["count"].astype(int)
    return out


def read_paths(manifest):
    """The ``path`` column of a CSV (a manifest, or any list of images): prediction needs
    no labels."""
    path = Path(manifest)
    if not path.is_file():
        raise LeukonetError(f"{path}: manifest not found")
    try:
        frame = pd.read_csv(path, dtype={"path": str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise LeukonetError(f"{path}: not a readable CSV ({e})") from None
    if "path" not in frame:
        raise LeukonetError(f"{path}: no `path` column (the image paths, relative to "
                            "--data-root); add one")
    return frame[["path"]]


def predict_with(model, classes, views, images=None, manifest=None, data_root=None, tta=0,
                 min_confidence=0.0, batch_size=32, max_pixels=None, domain=None, featured=None):
    """Predictions table for loose images/folders or a manifest (+ data root); ``views``:
    the (input size, nucleus crop) of each model input (``leukonet.data.views``).
    ``domain`` (``leukonet.evaluate.domain.Domain``): each image also gets its
    ``domain_score`` and an ``out_of_domain`` flag (``featured``: the model's
    ``domain.with_features`` twin, if the caller keeps one)."""
    from leukonet.data.views import loader_for
    from leukonet.evaluate import domain as D

    if manifest is not None and images:
        raise LeukonetError("give images or --manifest, not both (the manifest's rows are the "
                            "images to predict)")
    if manifest is not None:
        if data_root is None:
            raise LeukonetError("--manifest needs --data-root: the folder its paths are relative to")
        root, frame = Path(data_root), read_paths(manifest)
        frame = frame.assign(label_index=0)
    elif images:
        root, frame = frame_for_files(collect_images(images))
    else:
        raise LeukonetError("nothing to predict: give images, folders or --manifest")
    loader = loader_for(views, frame, root, batch_size, num_classes=len(classes),
                        skip_bad_images=True, workers=1,
                        max_pixels=max_pixels or image_io.DEFAULT_MAX_PIXELS)
    featured = D.featured_for(model, domain, featured)
    rows, proba = predict_loader(featured or model, loader, tta=tta)
    flags = None
    if isinstance(proba, dict):
        if featured is not None:
            flags = domain.flag(proba[D.FEATURES])
        proba = proba["cell_type"]
    return predictions_table(frame["path"].to_numpy()[rows], proba, classes, loader.bad, min_confidence,
                             domain_flags=flags)
