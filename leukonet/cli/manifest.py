"""``leukonet manifest build|split|subsample|audit|check``: manifests from the shell."""
import sys
import time
from pathlib import Path

from leukonet.console import Progress
from leukonet.data import families, images


def add_parser(sub):
    p = sub.add_parser("manifest", help="build, split, subsample, audit and check manifests")
    msub = p.add_subparsers(dest="manifest_command", metavar="ACTION", required=True)

    b = msub.add_parser("build", help="manifest from a folder-per-class tree or a labels CSV",
                        description="One row per image: path, label, label_index, sha1, width, "
                        "height, split, group. De-duplicates by content and groups augmented "
                        "copies into families.")
    b.add_argument("root", help="data root: ROOT/<class>/ or ROOT/<split>/<class>/, or the "
                   "folder the labels CSV paths are relative to")
    b.add_argument("-o", "--output", required=True, help="manifest CSV to write")
    b.add_argument("--splits", help="only these split folders, comma separated (e.g. TRAIN,TEST)")
    b.add_argument("--labels-csv", help="read labels from this CSV instead of folder names")
    b.add_argument("--path-column", default="path", help="labels CSV column with the file path")
    b.add_argument("--label-column", default="label", help="labels CSV column with the label")
    b.add_argument("--label-map", help="map label codes: a .json/.csv file or 'code=name,...'")
    b.add_argument("--path-format", help="turn a path cell into a file name, e.g. "
                   "'BloodImage_{:05d}.jpg'")
    b.add_argument("--on-conflict", choices=["drop", "first"], default="drop",
                   help="same content under two labels: drop every copy (default) or keep the first")
    b.add_argument("--threshold", type=float, default=families.DEFAULT_THRESHOLD,
                   help="colour-histogram distance within which two images are proposed as "
                   "copies of one cell; keypoints then verify each link (default %(default)s)")
    b.add_argument("--keypoint-links", action="store_true",
                   help="also merge families that show the same field of view (shifted "
                   "copies), by matching SIFT keypoints (OpenCV)")
    b.add_argument("--min-inliers", type=int, default=None,
                   help="with --keypoint-links: keypoints that must agree on one rotation + "
                   "shift to link two families (default 10)")
    b.add_argument("--max-pixels", type=int, default=images.DEFAULT_MAX_PIXELS,
                   help="reject images with more pixels (decompression bombs)")
    b.add_argument("--workers", type=int, help="reader threads")
    b.add_argument("--overwrite", action="store_true", help="replace an existing manifest")
    b.set_defaults(func=build)

    s = msub.add_parser("split", help="group-aware stratified train/val(/test) split")
    s.add_argument("manifest", help="manifest CSV to split (from `leukonet manifest build`)")
    s.add_argument("--val", type=float, default=0.2, help="validation fraction (default 0.2)")
    s.add_argument("--test", type=float, help="test fraction of the whole set; without it a "
                   "TEST split folder is kept as the test set")
    s.add_argument("--seed", type=int, default=0, help="seed of the random assignment of "
                   "families to splits (default %(default)s)")
    s.add_argument("-o", "--output-dir", help="where train.csv/val.csv/test.csv go "
                   "(default: beside the manifest)")
    s.add_argument("--overwrite", action="store_true",
                   help="replace existing train.csv/val.csv/test.csv")
    s.set_defaults(func=split)

    u = msub.add_parser("subsample", help="nested, stratified low-data subsets of whole families")
    u.add_argument("manifest", help="manifest CSV to draw from (e.g. a train.csv)")
    u.add_argument("--fraction", type=float, nargs="+", required=True,
                   help="one or more fractions, e.g. 0.5 0.1 0.01")
    u.add_argument("--seed", type=int, default=0, help="seed of the draw of families; one "
                   "seed gives nested subsets (default %(default)s)")
    u.add_argument("-o", "--output", help="output CSV (one fraction only); default "
                   "<manifest>_<pct>pct.csv")
    u.add_argument("--overwrite", action="store_true", help="replace existing output CSVs")
    u.set_defaults(func=subsample)

    a = msub.add_parser("audit", help="leakage report within and between manifests")
    a.add_argument("manifests", nargs="+", metavar="MANIFEST", help="one or two manifest CSVs")
    a.add_argument("--root", help="data root: compare the images themselves (near duplicates)")
    a.add_argument("--threshold", type=float, default=families.DEFAULT_THRESHOLD,
                   help="with --root: colour-histogram distance within which two images are "
                   "proposed as near duplicates; keypoints then verify each (default %(default)s)")
    a.add_argument("--keypoints", action="store_true",
                   help="with --root and two manifests: also find families that show the same "
                   "field of view (shifted copies), by SIFT keypoints; needs OpenCV")
    a.set_defaults(func=audit)

    c = msub.add_parser("check", help="verify every row: file exists, hash matches, decodes")
    c.add_argument("manifest", help="manifest CSV to verify")
    c.add_argument("--root", required=True, help="data root the manifest paths are relative to")
    c.add_argument("--max-pixels", type=int, default=images.DEFAULT_MAX_PIXELS,
                   help="report images with more pixels (decompression bombs; default %(default)s)")
    c.set_defaults(func=check)


def build(args):
    from leukonet.data.manifest import Manifest

    start = time.perf_counter()
    common = dict(max_pixels=args.max_pixels, workers=args.workers,
                  progress=Progress("read images", "images"))
    if args.labels_csv:
        m = Manifest.from_labels_csv(args.root, args.labels_csv, args.path_column,
                                     args.label_column, args.label_map, args.path_format, **common)
    else:
        splits = args.splits.split(",") if args.splits else None
        m = Manifest.from_folder(args.root, splits=splits, **common)
    m = m.dedup(on_conflict=args.on_conflict).group(
        threshold=args.threshold, workers=args.workers,
        progress=Progress("verify links", "pairs"))
    if args.keypoint_links:
        m = m.link_fields(args.min_inliers, progress=Progress("keypoint links", "families"))
    out = m.to_csv(args.output, overwrite=args.overwrite)
    print(m.summary())
    print(f"wrote {out} ({len(m)} images), {out.parent / 'classes.json'}, "
          f"{Manifest.rejects_path(out)} ({len(m.rejects)} left out) "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


def split(args):
    from leukonet.data.manifest import Manifest
    from leukonet.data.splits import split_shares, split_table
    from leukonet.errors import LeukonetError

    if args.output_dir and Path(args.output_dir).suffix.lower() == ".csv":
        raise LeukonetError(f"-o {args.output_dir}: -o is a folder that gets train.csv, val.csv "
                            f"(and test.csv); pass a folder, e.g. -o {Path(args.output_dir).with_suffix('')}")
    m = Manifest.read_csv(args.manifest)
    parts = m.split(val=args.val, test=args.test, seed=args.seed)
    out_dir = Path(args.output_dir or Path(args.manifest).parent)
    paths = [out_dir / f"{name}.csv" for name in parts]

    clash = [str(p) for p in paths if p.exists()]
    if clash and not args.overwrite:
        raise LeukonetError(f"{', '.join(clash)}: exist; pass --overwrite or -o another folder")
    for (name, part), path in zip(parts.items(), paths):
        part.to_csv(path, overwrite=True, rejects=False)
    table = split_table(parts)
    print(table.to_string())
    shares = table.loc["total"] / table.loc["total"].sum()
    print("shares: " + ", ".join(f"{k} {v:.1%}" for k, v in shares.items()))
    print("share of each class per split" + ("" if args.test else
          " (val: of the rows outside the test folder)" if "test" in parts else "") + ":")
    print(split_shares(parts, args.test).map(lambda v: f"{v:.1%}").to_string())
    for note in next(iter(parts.values())).notes:
        print(note)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def subsample(args):
    from leukonet.data.manifest import Manifest
    from leukonet.data.splits import fraction_tag
    from leukonet.errors import LeukonetError

    if args.output and len(args.fraction) > 1:
        raise LeukonetError("-o names one file; give one --fraction or leave -o out")
    m = Manifest.read_csv(args.manifest)
    src = Path(args.manifest)
    for fraction in sorted(args.fraction, reverse=True):
        part = m.subsample(fraction, seed=args.seed)
        out = Path(args.output) if args.output else src.with_name(
            f"{src.stem}_{fraction_tag(fraction)}.csv")
        part.to_csv(out, overwrite=args.overwrite, rejects=False)
        counts = part.frame["label"].value_counts().reindex(m.classes, fill_value=0)
        print(f"{fraction:g}: {len(part)} images ({len(part) / len(m):.1%}), "
              f"{part.frame['group'].nunique()} families; per class "
              + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" -> {out}")
    return 0


def audit(args):
    from leukonet.data.manifest import Manifest
    from leukonet.errors import LeukonetError

    if len(args.manifests) > 2:
        raise LeukonetError("audit compares one or two manifests")
    from leukonet.data.audit import audit as run_audit

    ms = [Manifest.read_csv(p, root=args.root) for p in args.manifests]
    if args.keypoints and (len(ms) < 2 or not args.root):
        raise LeukonetError("--keypoints compares the images of two manifests: pass two "
                            "manifests and --root")
    report = run_audit(*ms, threshold=args.threshold, names=args.manifests,
                       keypoints=args.keypoints, progress=lambda what: Progress(what, "pairs"))
    print(report)
    return 1 if report.verdict.startswith("LEAK") else 0


def check(args):
    from leukonet.data.manifest import Manifest

    m = Manifest.read_csv(args.manifest)
    problems = m.check(args.root, max_pixels=args.max_pixels)
    if len(problems):
        for p in problems.itertuples():
            print(f"{args.manifest}:{p.row}: {p.path}: {p.problem}")
        print(f"{len(problems)} of {len(m)} rows have problems")
        return 1
    print(f"OK: all {len(m)} rows of {args.manifest} found under {args.root}, "
          "hashes match, images decode")
    return 0
