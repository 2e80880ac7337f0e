"""compare(a, b): is one run better than another on the same test images, beyond noise?

Two evaluations of one manifest (``RUN/eval/<manifest>/predictions.csv``) are paired
image by image. The difference in accuracy gets a 95 % interval from a paired bootstrap
over *families* (every augmented copy of one source cell), because copies of a cell are
right or wrong together: on blood-cells TEST, 2,487 images are 69 cells, and an interval
over images would be several times too narrow. Without families (a manifest with no
``group`` column) every image counts as its own source, and the result says so.
"""
from pathlib import Path

import pandas as pd

from leukonet.errors import LeukonetError


def predictions_of(path, eval_name="test"):
    """The evaluation's predictions.csv: ``path`` is a run directory (its
    ``eval/<eval_name>/``), an evaluation folder, or the CSV itself."""
    p = Path(path)
    candidates = [p] if p.suffix == ".csv" else [p / "predictions.csv", p / "eval" / eval_name / "predictions.csv"]
    for c in candidates:
        if c.is_file():
            table = pd.read_csv(c, keep_default_na=False, dtype={"group": str})
            missing = [k for k in ("path", "label", "predicted") if k not in table]
            if missing:
                raise LeukonetError(f"{c}: no {', '.join(missing)} column(s): not an evaluation's "
                                    "predictions; make them with `leukonet evaluate RUN --manifest ...`")
            return c, table
    raise LeukonetError(f"{p}: no predictions.csv (looked for {', '.join(map(str, candidates))}); run "
                        f"`leukonet evaluate {p} --manifest ...` first, or name the evaluation "
                        "with --eval")


def _groups_from(manifest):
    from leukonet.data.manifest import Manifest

    m = Manifest.read_csv(manifest)
    if not m.has_groups:
        raise LeukonetError(f"{manifest}: no `group` column; build it with `leukonet manifest build`")
    return dict(zip(m.frame["path"].astype(str), m.frame["group"].astype(str)))


def _paired(a, b, name_a, name_b):
    a = a[a["error"].astype(str) == ""] if "error" in a else a
    b = b[b["error"].astype(str) == ""] if "error" in b else b
    for name, t in ((name_a, a), (name_b, b)):
        if t["path"].duplicated().any():
            raise LeukonetError(f"{name}: path {t['path'][t['path'].duplicated()].iloc[0]!r} is listed "
                                "twice; compare evaluations of a manifest without duplicates")
    joined = a.merge(b, on="path", how="outer", suffixes=("_a", "_b"), indicator=True)
    only = joined[joined["_merge"] != "both"]
    if len(only):
        row = only.iloc[0]
        side = name_a if row["_merge"] == "left_only" else name_b
        raise LeukonetError(f"the evaluations cover different images ({len(only)} are in only one, e.g. "
                            f"{row['path']!r} in {side} alone); compare two evaluations of one manifest")
    differ = joined[joined["label_a"] != joined["label_b"]]
    if len(differ):
        raise LeukonetError(f"{differ['path'].iloc[0]!r} has label {differ['label_a'].iloc[0]!r} in {name_a} "
                            f"but {differ['label_b'].iloc[0]!r} in {name_b}; compare evaluations of one manifest")
    return joined.drop(columns="_merge")


def compare(a, b, eval_name="test", manifest=None, resamples=2000, seed=0):
    """Accuracy of evaluation ``a`` minus that of ``b`` on the images both predicted, with a
    95 % paired-bootstrap interval over families, and how their errors overlap.

    ``a``/``b``: run directories, evaluation folders or predictions CSVs. Families come
    from the predictions' ``group`` column (``leukonet evaluate`` writes one for manifests
    with families), else from ``manifest``; else each image is its own family.
    """
    from leukonet.evaluate.metrics import family_interval

    (path_a, pa), (path_b, pb) = predictions_of(a, eval_name), predictions_of(b, eval_name)
    joined = _paired(pa, pb, str(a), str(b))
    if manifest is not None:
        groups = _groups_from(manifest)
        missing = joined.loc[~joined["path"].isin(groups), "path"]
        if len(missing):
            raise LeukonetError(f"{manifest}: no row for {missing.iloc[0]!r} (and {len(missing) - 1} more); "
                                "pass the manifest the runs were evaluated on")
        joined["family"] = joined["path"].map(groups)
        source = f"families of {manifest}"
    elif "group_a" in joined:
        joined["family"] = joined["group_a"].astype(str)
        source = "families of the evaluated manifest"
    else:
        joined["family"] = joined["path"]
        source = "none known: every image counted as its own source (pass --manifest with a group column)"
    right_a = joined["predicted_a"] == joined["label_a"]
    right_b = joined["predicted_b"] == joined["label_a"]
    per_family = (pd.DataFrame(dict(family=joined["label_a"] + "/" + joined["family"], a=right_a, b=right_b))
                  .groupby("family").agg(images=("a", "size"), a=("a", "sum"), b=("b", "sum")))
    mostly = per_family[["a", "b"]].ge(per_family["images"] / 2, axis=0)
    out = dict(a=str(a), b=str(b), predictions_a=str(path_a), predictions_b=str(path_b), images=len(joined),
               families=int(len(per_family)), family_source=source,
               accuracy_a=float(right_a.mean()), accuracy_b=float(right_b.mean()),
               difference=float(right_a.mean() - right_b.mean()),
               wrong_in_both=int((~right_a & ~right_b).sum()), wrong_only_a=int((~right_a & right_b).sum()),
               wrong_only_b=int((right_a & ~right_b).sum()),
               families_mostly_right_only_a=int((mostly["a"] & ~mostly["b"]).sum()),
               families_mostly_right_only_b=int((mostly["b"] & ~mostly["a"]).sum()),
               resamples=int(resamples))
    if len(per_family) > 1:
        out["difference_ci95"] = family_interval(
            (per_family["a"], per_family["b"], per_family["images"]),
            lambda x, y, m, axis=-1: (x.sum(axis) - y.sum(axis)) / m.sum(axis), resamples, seed)
    return out


def format_comparison(r):
    """The comparison as a few lines of text."""
    w = max(len(r["a"]), len(r["b"]))
    ci = r.get("difference_ci95")
    interval = (f"95 % interval {100 * ci[0]:+.2f} to {100 * ci[1]:+.2f} (paired bootstrap over "
                f"{r['families']} families, {r['resamples']} resamples)") if ci else "no interval (one family)"
    verdict = ("" if not ci else "  -> within noise" if ci[0] <= 0 <= ci[1]
               else "  -> A better" if ci[0] > 0 else "  -> B better")
    return "\n".join([
        f"{r['images']} images, {r['families']} families ({r['family_source']})",
        f"A {r['a']:<{w}}  accuracy {100 * r['accuracy_a']:.2f} %  wrong {r['wrong_in_both'] + r['wrong_only_a']}",
        f"B {r['b']:<{w}}  accuracy {100 * r['accuracy_b']:.2f} %  wrong {r['wrong_in_both'] + r['wrong_only_b']}",
        f"A - B: {100 * r['difference']:+.2f} points; {interval}{verdict}",
        f"wrong in both {r['wrong_in_both']}, only A {r['wrong_only_a']}, only B {r['wrong_only_b']}; "
        f"families mostly right only in A {r['families_mostly_right_only_a']}, "
        f"only in B {r['families_mostly_right_only_b']}",
    ])
