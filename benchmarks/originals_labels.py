"""Analysis: match every family of the blood-cells manifest to the 367 original smears.

Each 320x240 image of the set is an original 640x480 smear halved, then rotated, flipped
and shifted, and ``originals/labels.csv`` holds the source annotation of each smear. This
script links families to originals with the same SIFT + RANSAC test that
``--keypoint-links`` uses (``leukonet.data.keypoint_links.link_groups``: every original
is a one-image "family" of its own), then prints, per split and class: families, the
families matched to an original, those whose original is labelled otherwise; and the
originals no family matches, by label (the cells the set lacks: what pretraining on the
originals could add). Writes benchmarks/results/originals_labels.json. Not a test.

    python benchmarks/originals_labels.py [--quick]   # --quick: the TEST families only
"""
import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "datasets" / "blood-cells"
_ORIGINAL = 10**6  # group ids of the originals start here, above any family id


def _labels(path):
    import pandas as pd

    table = pd.read_csv(path)  # ",Image,Category": some rows empty, some with two labels
    return {int(i): (c.replace(" ", "") if isinstance(c, str) else "")
            for i, c in zip(table["Image"], table["Category"])}


def _match(frame, images, originals):
    """``(links, original_ids)``: rows ``(group, original, inliers)``."""
    from leukonet.data.images import open_rgb, resize_rgb
    from leukonet.data.keypoint_links import link_groups

    files = sorted(originals.glob("BloodImage_*.jpg"))
    ids = [int(f.stem.split("_")[1]) for f in files]
    paths = [images / p for p in frame["path"]] + files
    groups = list(frame["group"]) + [_ORIGINAL + i for i in ids]

    def read_rgb(row):  # the originals halved, as the set's images are
        return resize_rgb(open_rgb(paths[row]), (240, 320))

    t0 = time.perf_counter()
    links = link_groups(groups, read_rgb, per_family=3, progress=lambda done, total: print(
        f"  read {done}/{total} families and originals ({time.perf_counter() - t0:.0f} s)",
        file=sys.stderr))
    return [(a, b - _ORIGINAL, n) for a, b, n in links if a < _ORIGINAL <= b], ids


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default=str(HERE.parent / "data_manifests" / "blood-cells"
                                                  / "manifest.csv"))
    parser.add_argument("--images", default=str(SHARED / "images"))
    parser.add_argument("--originals", default=str(SHARED / "originals"))
    parser.add_argument("--quick", action="store_true", help="the TEST families only; writes nothing")
    args = parser.parse_args()
    images, originals = Path(args.images), Path(args.originals)
    for folder in (images, originals):
        if not folder.is_dir():
            sys.exit(f"{folder}: not found; pass --images and --originals (the blood-cells set)")
    import pandas as pd

    frame = pd.read_csv(args.manifest)
    # 2 families span both folders; like `manifest split` they count as TEST's (TEST
    # stays whole), with their TEST images
    family_split = frame.groupby("group")["split"].transform(
        lambda s: "TEST" if (s == "TEST").any() else s.iloc[0])
    frame = frame[frame["split"] == family_split]
    if args.quick:
        frame = frame[frame["split"] == "TEST"]
    frame = frame.reset_index(drop=True)
    labels = _labels(originals / "labels.csv")
    t0 = time.perf_counter()
    links, ids = _match(frame, images, originals)
    seconds = time.perf_counter() - t0

    links = pd.DataFrame(links, columns=["group", "original", "inliers"])
    links["original_label"] = links["original"].map(labels).fillna("")
    family = frame.groupby("group").agg(
        split=("split", "first"), label=("label", lambda s: s.mode()[0]),  # the majority
        labels=("label", lambda s: frozenset(s)), images=("label", "size"))
    links = links.join(family, on="group")
    # an original's label may name two cells ("NEUTROPHIL, LYMPHOCYTE") and a family may
    # mix two labels (3 of 328 here): they agree when they share one
    links["agrees"] = [bool(mine & set(orig.split(",")))
                       for mine, orig in zip(links["labels"], links["original_label"])]
    rows = []
    for (split, label), fam in family.groupby(["split", "label"]):
        mine = links[links["group"].isin(fam.index)]
        other = mine[~mine["agrees"]]
        rows.append(dict(split=split, label=label, families=len(fam), images=int(fam["images"].sum()),
                         matched=int(mine["group"].nunique()),
                         labelled_otherwise=int(other["group"].nunique()),
                         their_images=int(family.loc[other["group"].unique(), "images"].sum())))
    unmatched = sorted(set(ids) - set(links["original"]))
    by_label = pd.Series([labels.get(i, "") or "(none)" for i in unmatched]).value_counts()

    print(f"{len(frame)} images in {len(family)} families; {len(ids)} originals; "
          f"{len(links)} family-original links ({seconds:.0f} s)")
    print(f"{'split':6} {'class':11} {'families':>8} {'images':>7} {'matched':>8} "
          f"{'labelled otherwise (images)':>28}")
    for r in rows:
        print(f"{r['split']:6} {r['label']:11} {r['families']:8} {r['images']:7} {r['matched']:8} "
              f"{r['labelled_otherwise']:>20} ({r['their_images']})")
    disagree = links[~links["agrees"]].sort_values("group")
    for r in disagree.itertuples():
        print(f"  family {r.group} ({r.split} {'+'.join(sorted(r.labels))}, {r.images} images) "
              f"matches original "
              f"{r.original} labelled {r.original_label or '(none)'} ({r.inliers} inliers)")
    print(f"originals matched by no family: {len(unmatched)}: "
          + ", ".join(f"{k} {v}" for k, v in by_label.items()))
    if args.quick:
        return
    out = HERE / "results" / "originals_labels.json"
    from leukonet import io

    io.write_json(out, dict(
        manifest=args.manifest, date=time.strftime("%Y-%m-%d"), seconds=round(seconds),
        families=len(family), originals=len(ids), by_split_and_class=rows,
        labelled_otherwise=disagree[["group", "split", "label", "images", "original",
                                     "original_label", "inliers"]].to_dict("records"),
        unmatched_originals={str(k): int(v) for k, v in by_label.items()},
        unmatched_original_ids=unmatched))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
