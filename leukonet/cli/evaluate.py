"""``leukonet evaluate|predict|explain|export|report``: using a trained run."""
import sys
from pathlib import Path

from leukonet.data.images import DEFAULT_MAX_PIXELS
from leukonet.errors import LeukonetError


def add_parser(sub):
    e = sub.add_parser("evaluate", help="metrics, confusion matrix, calibration on a manifest")
    e.add_argument("run", help="run directory, or shipped weights by name (e.g. pbc)")
    e.add_argument("--manifest", required=True, help="manifest CSV of the images to evaluate "
                   "(labels needed), e.g. test.csv")
    e.add_argument("--data-root", required=True, help="folder the manifest paths are relative to")
    e.add_argument("--tta", type=int, default=0, help="average N flipped/rotated views")
    e.add_argument("-o", "--out", help="folder for the results (default RUN/eval/<manifest name>; "
                   "e.g. RUN/eval/test-tta4 to keep the plain evaluation for `leukonet compare`)")
    e.set_defaults(func=evaluate)

    p = sub.add_parser("predict", help="predict images, folders or a manifest; differential count",
                       usage="leukonet predict MODEL (IMAGE_OR_FOLDER ... | --manifest CSV "
                             "--data-root DIR) -o OUTPUT.csv [options]",
                       description="Classify loose images and folders (searched recursively), or "
                       "the rows of --manifest with --data-root (then give no images), and write one "
                       "row per image plus the differential count (cells per class).")
    p.add_argument("model", help="run directory, MODEL.keras, or shipped weights by name (e.g. pbc)")
    p.add_argument("images", nargs="*", help="image files or folders (searched recursively); "
                   "none with --manifest")
    p.add_argument("--manifest", help="a CSV with a `path` column instead of images (labels "
                   "not needed)")
    p.add_argument("--data-root", help="with --manifest: the folder its paths are relative to")
    p.add_argument("-o", "--output", required=True, help="predictions CSV (and <name>.counts.csv "
                   "beside it)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="reject larger images (decompression bombs; default %(default)s)")
    p.add_argument("--min-confidence", type=float, default=0.0,
                   help="below this, a cell counts as 'uncertain'")
    p.add_argument("--tta", type=int, default=0, help="average N flipped/rotated views per image")
    p.add_argument("--image-size", help="HxW, for a bare .keras file (default: its input size)")
    p.add_argument("--nucleus-crop", type=float, help="for a bare .keras file trained with "
                   "--nucleus-crop: the same fraction (a run directory knows its own)")
    p.set_defaults(func=predict)

    x = sub.add_parser("explain", help="Grad-CAM heatmaps over images")
    x.add_argument("run", help="run directory, or shipped weights by name (e.g. pbc)")
    x.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    x.add_argument("-o", "--output", required=True, help="folder for the PNGs")
    x.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="reject larger images (decompression bombs; default %(default)s)")
    x.set_defaults(func=explain)

    t = sub.add_parser("export", help="export the best model for deployment")
    t.add_argument("run", help="run directory, or shipped weights by name (e.g. pbc)")
    t.add_argument("--format", default="keras", help="keras | saved_model | tflite | onnx")
    t.add_argument("-o", "--output", help="file (folder for saved_model) to write; default "
                   "RUN/export/model.<format> (RUN/export/model_saved_model)")
    t.set_defaults(func=export)

    r = sub.add_parser("report", help="one self-contained HTML page for a run")
    r.add_argument("run", help="run directory, or shipped weights by name (e.g. pbc)")
    r.add_argument("-o", "--output", help="HTML file to write (default RUN/report.html)")
    r.set_defaults(func=report)

    c = sub.add_parser("calibrate", help="add the out-of-domain check to a run made without it",
                       description="Describe a run's training images in feature space "
                       "(RUN/domain.npz: class means and covariance of the penultimate features, "
                       "a threshold that 95 % of its validation images pass), from its own "
                       "train_manifest.csv and val_manifest.csv; predict and evaluate then flag "
                       "images unlike them. fit does this itself since leukonet 0.1.")
    c.add_argument("run", help="run directory")
    c.add_argument("--data-root", help="the folder the run's manifests are relative to "
                   "(default: the run's own data root)")
    c.add_argument("--train-manifest", help="training images to describe (default "
                   "RUN/train_manifest.csv)")
    c.add_argument("--val-manifest", help="images that set the threshold (default "
                   "RUN/val_manifest.csv)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing domain.npz")
    c.set_defaults(func=calibrate)


def _run(path):
    from leukonet.models import weights
    from leukonet.train.run import Run

    p = Path(path)
    if weights.named(path):
        return Run(path)  # shipped weights by name, e.g. `leukonet predict pbc ...`
    if not p.is_dir():
        raise LeukonetError(f"{p}: no such run directory (nor shipped weights: `leukonet "
                            "backbones` lists them)")
    if not (p / "model.keras").is_file():
        raise LeukonetError(f"{p}: no model.keras here (has the run finished an epoch?)")
    return Run(p)


def evaluate(args):
    ev = _run(args.run).evaluate(args.manifest, args.data_root, tta=args.tta, out_dir=args.out)
    m = ev.metrics
    print(ev.tables["per_class"].round(4).to_string(na_rep="n/a"))
    print(f"accuracy {m['accuracy']:.4f}  balanced {m['balanced_accuracy']:.4f}  macro-F1 "
          f"{m['macro_f1']:.4f}  top-2 {m['top2_accuracy']:.4f}  ECE {m['expected_calibration_error']:.4f}"
          f"  ({m['images']} images{', TTA ' + str(args.tta) if args.tta else ''})")
    if "by_family" in m:
        f = m["by_family"]
        ci = f.get("accuracy_ci95_over_families")
        print(f"{f['families']} families (augmented copies of one cell count once): mean accuracy "
              f"per family {f['family_mean_accuracy']:.4f}, {f['families_mostly_wrong']} mostly wrong"
              + (f"; accuracy 95 % interval over families {ci[0]:.4f}-{ci[1]:.4f}" if ci else ""))
    _domain_lines(m.get("domain"), args.run)
    if m.get("note"):
        print("note: " + m["note"])
    if m["unreadable"]:
        print(f"{len(m['unreadable'])} unreadable image(s) left out; see predictions.csv")
    print(f"wrote {ev.dir}")
    return 0


def _domain_lines(d, name):
    """The out-of-domain check's lines for evaluate (``d``: metrics.json "domain", None
    for a model without a description)."""
    from leukonet.evaluate import domain as D

    if d is None:
        print(D.unavailable_line(name), file=sys.stderr)
        return
    acc = ", ".join(f"accuracy {what} {d[key]:.4f}" for what, key in
                    (("in domain", "accuracy_in_domain"), ("out of domain", "accuracy_out_of_domain"))
                    if d.get(key) is not None)
    print(f"out of domain: {d['out_of_domain']} of {d['images']} images"
          + (f" ({acc})" if acc else ""))
    if d["out_of_domain_share"] > 0.2:
        print(D.warning_line(d["out_of_domain"], d["images"], name), file=sys.stderr)


def predict(args):
    from leukonet import io
    from leukonet.config import parse_size
    from leukonet.data import images as image_io
    from leukonet.data.views import run_views, view
    from leukonet.evaluate.predict import differential_count, predict_with
    from leukonet.models import weights

    p, run = Path(args.model), None
    if p.is_dir() or weights.named(args.model):
        run = _run(args.model)
        model, classes, views = run.model, run.classes, run_views(run.config)
    else:
        import json

        from leukonet.train.run import load_model

        model = load_model(p)
        sidecar = p.parent / "classes.json"
        n = model.output_shape[-1] if not isinstance(model.output_shape, dict) else None
        classes = (json.loads(sidecar.read_text())["classes"] if sidecar.is_file()
                   else [f"class_{i}" for i in range(n or 0)])
        size = parse_size(args.image_size) if args.image_size else list(model.input_shape[1:3])
        if len(model.inputs) > 1:
            raise LeukonetError(f"{p}: an ensemble of members that read images differently; give "
                                "its run directory, whose config.json says how each input is read")
        views = [view(size, args.nucleus_crop or 0.0)]
    out = Path(args.output)
    counts_path = out.with_name(out.stem + ".counts.csv")
    _check_output(out, counts_path, overwrite=args.overwrite)
    since = image_io.converted_files()
    domain = run.domain if run is not None else None
    table = predict_with(model, classes, views, images=args.images, manifest=args.manifest,
                         data_root=args.data_root, tta=args.tta, min_confidence=args.min_confidence,
                         max_pixels=args.max_pixels, domain=domain)
    io.write_csv(out, table)
    counts = differential_count(table, classes)
    io.write_csv(counts_path, counts, index=True)
    print("differential count")
    print(counts.to_string())
    errors = table[table["error"] != ""]
    for row in errors.head(10).itertuples():
        print(f"unreadable: {row.path}: {row.error}", file=sys.stderr)
    if len(errors) > 10:
        print(f"... {len(errors)} unreadable image(s) in all, listed in {out}", file=sys.stderr)
    note = image_io.conversion_note(since)
    if note:
        print(note)
    _predict_domain_lines(table, run, args.model)
    print(f"wrote {out} and {counts_path}")
    return 0


def _predict_domain_lines(table, run, name):
    """One warning line when images are out of domain (and the model card's scope when most
    are); one note when the model has no description to check against."""
    from leukonet.evaluate import domain as D
    from leukonet.models import weights

    if "out_of_domain" not in table:
        print(D.unavailable_line(name), file=sys.stderr)
        return
    readable = table[table["error"] == ""]
    flagged = int(readable["out_of_domain"].astype(bool).sum())
    if not flagged:
        return
    print(D.warning_line(flagged, len(readable), name), file=sys.stderr)
    if flagged > len(readable) / 2 and run is not None and run.shipped:
        scope = weights.card(run.shipped).get("scope")  # what the shipped model was made for
        if scope:
            print(f"{name}: {scope}", file=sys.stderr)


def _check_output(*paths, overwrite=False):
    """Refuse to replace a file without --overwrite, and any file of a run directory."""
    from leukonet.train.run import FILES

    own = set(FILES.values()) | {"classes.json"}
    for path in paths:
        if path.name in own and (path.parent / "config.json").is_file():
            raise LeukonetError(f"{path}: a file of the run in {path.parent}; write the "
                                "predictions elsewhere (-o)")
        if path.exists() and not overwrite:
            raise LeukonetError(f"{path}: exists; pass --overwrite to replace it, or -o another "
                                "file")


def explain(args):
    fig = _run(args.run).explain(args.images, out_dir=args.output, max_pixels=args.max_pixels)
    for path, reason in fig.leukonet_bad.items():
        print(f"skipped {path}: {reason}", file=sys.stderr)
    from leukonet.evaluate import domain as D

    flagged = fig.leukonet_out_of_domain
    if flagged is None:
        print(D.unavailable_line(args.run), file=sys.stderr)
    elif flagged:
        print(D.warning_line(len(flagged), fig.leukonet_explained, args.run), file=sys.stderr)
    print(f"wrote {len(fig.leukonet_written)} Grad-CAM image(s) to {args.output}")
    return 0


def export(args):
    out = _run(args.run).export(args.format, args.output)
    print(f"wrote {out}")
    return 0


def report(args):
    from leukonet.evaluate.report import report as make

    out = make(_run(args.run), args.output)
    print(f"wrote {out}")
    return 0


def calibrate(args):
    from leukonet.evaluate.domain import FILE

    run = _run(args.run)
    if run.shipped:
        raise LeukonetError(f"{args.run}: shipped weights carry their description already")
    if (Path(run.path) / FILE).is_file() and not args.overwrite:
        raise LeukonetError(f"{Path(run.path) / FILE}: exists; pass --overwrite to recompute it")
    d = run.calibrate(args.data_root, args.train_manifest, args.val_manifest)
    print(f"wrote {Path(run.path) / FILE}: {d.info['train_images']} training images described, "
          f"threshold {d.threshold:.2f} ({d.info['val_pass']:.0%} of {d.info['val_images']} "
          f"validation images pass)")
    return 0
