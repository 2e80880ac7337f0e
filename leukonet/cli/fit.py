"""``leukonet fit``: train a classifier (``--demo``: the built-in main job on real cells)."""
import json

from leukonet.config import FitConfig, parse_size
from leukonet.errors import LeukonetError

_DEFAULTS = FitConfig()


# What each augmentation value means (shared with `leukonet augment-preview`).
AUGMENT_HELP = {
    "rotate": "rotate by up to +-this many degrees",
    "zoom": "zoom by a factor in [1-Z, 1+Z]",
    "shift": "shift by up to +-this fraction of the height/width",
    "brightness": "add up to +-this fraction of 255 to the pixels",
    "contrast": "scale contrast by a factor in [1-C, 1+C]",
    "hue": "turn the hue by up to +-this fraction of a full turn",
    "saturation": "scale saturation by a factor in [1-S, 1+S]",
}


def _bool_pair(p, name, default, help, no_help):
    dest = name.replace("-", "_")
    p.add_argument(f"--{name}", dest=dest, action="store_true", default=None, help=help)
    p.add_argument(f"--no-{name}", dest=dest, action="store_false", help=no_help)


def add_parser(sub):
    p = sub.add_parser("fit", help="train a classifier on a manifest",
                       description="Train a white-blood-cell classifier. Give --manifest and "
                       "--data-root (or a --config that names them), or --demo, or --resume "
                       "RUN_DIR alone. Flags left out take their value from --config or --preset, "
                       "else the defaults shown.")
    p.add_argument("--demo", action="store_true", help="the main job: fine-tune the shipped pbc "
                   "weights on a sample of real blood cells (copied to ./leukonet-demo/), then "
                   "score held-out cells (about 1 minute on 2 CPU cores)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run (no other flags)")
    add_fit_arguments(p)
    r = p.add_argument_group("run directory")
    r.add_argument("--run-dir", help="default runs/<name>")
    r.add_argument("--name", help="run name: the run directory is runs/NAME unless --run-dir "
                   "is given (default BACKBONE-HEAD-YYYYMMDD-HHMMSS)")
    r.add_argument("--overwrite", action="store_true", default=None,
                   help="replace a non-empty run directory (its run is deleted)")
    p.set_defaults(func=run)


def add_fit_arguments(p):
    """The options a run is made of (shared with `leukonet ablate`)."""
    p.add_argument("--config", help="a config.json (e.g. from an earlier run) to start from")
    p.add_argument("--preset", help="a named recipe to start from (see leukonet.presets), "
                   "e.g. blood-cells-cpu; flags given override it")
    d = p.add_argument_group("data")
    d.add_argument("--manifest", help="training manifest CSV (its split column may hold train/val)")
    d.add_argument("--data-root", help="folder the manifest paths are relative to")
    d.add_argument("--val-manifest", help="validation manifest; default: the manifest's val rows, "
                   "else a group-aware split")
    d.add_argument("--val-fraction", type=float, help="group-aware validation split made when no "
                   f"validation is given (default {_DEFAULTS.val_fraction}); 0: no validation, "
                   "every non-test row trains and the last epoch is the model")
    d.add_argument("--image-size", help="HxW, 'native' (the files' size) or 'default' (the backbone's)")
    d.add_argument("--batch-size", type=int, help=f"(default {_DEFAULTS.batch_size})")
    d.add_argument("--workers", type=int, help="loader threads")
    d.add_argument("--cache-dir", help="keep decoded, resized pixels here for later epochs")
    d.add_argument("--skip-bad-images", action="store_true", default=None,
                   help="skip unreadable images met mid-epoch and list them at the end")
    d.add_argument("--nucleus-crop", type=float, metavar="FRACTION", help="crop a square of this "
                   "fraction of the short side around the stained nucleus before resizing (e.g. 0.83)")
    a = p.add_argument_group("augmentation (training only; 0 turns one off)")
    a.add_argument("--rotate", type=float, help=f"{AUGMENT_HELP['rotate']} (default {_DEFAULTS.rotate})")
    _bool_pair(a, "flip", True, "horizontal and vertical flips (default on)",
               "no flips")
    for name in ("zoom", "shift", "brightness", "contrast", "hue", "saturation"):
        a.add_argument(f"--{name}", type=float,
                       help=f"{AUGMENT_HELP[name]} (default {getattr(_DEFAULTS, name)})")
    a.add_argument("--mixup", type=float, metavar="ALPHA", help="blend pairs of training images "
                   "and their labels by a Beta(ALPHA, ALPHA) weight (keras.layers.MixUp; e.g. 0.2)")
    m = p.add_argument_group("model")
    m.add_argument("--backbone", help=f"see `leukonet backbones` (default {_DEFAULTS.backbone}), "
                   "or your own headless network saved as a .keras file (copied into the run)")
    m.add_argument("--backbone-preprocessing", choices=["none", "tf", "torch", "caffe"],
                   help="with your own backbone: what its input gets (default none: RGB 0-255 as "
                   "float; tf: [-1, 1]; torch: [0, 1] then ImageNet mean/std; caffe: BGR minus "
                   "ImageNet means)")
    m.add_argument("--head", help="conv | gap | dense | bilstm (default conv)")
    m.add_argument("--head-filters", type=int, help="Conv2D filters of the conv head (default "
                   f"{_DEFAULTS.head_filters}; the other heads ignore it)")
    m.add_argument("--head-units", type=int, help="units of the dense head's Dense layer (default "
                   "256) or of each bilstm LSTM (default 64); conv and gap ignore it")
    m.add_argument("--dropout", type=float, help="dropout rate at the end of the head, 0-1 "
                   f"(default {_DEFAULTS.dropout})")
    m.add_argument("--weights", help="imagenet | none | shipped weights by name (pbc: `leukonet "
                   "backbones` lists them) | FILE.h5 | RUN_DIR | MODEL.keras")
    m.add_argument("--multitask", help="JSON file or string: {\"name\": \"nucleus\", \"map\": "
                   "{label: second label}, \"loss_weight\": 0.5}")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, help="most epochs in all, --freeze-epochs included "
                   f"(default {_DEFAULTS.epochs}; --stop-patience may end sooner)")
    t.add_argument("--lr", type=float, help="learning rate (with --freeze-epochs: of the head-only "
                   f"stage; default {_DEFAULTS.lr:g})")
    t.add_argument("--lr-patience", type=int, help="plateau schedule: epochs without improvement "
                   f"of --monitor before the learning rate drops (default {_DEFAULTS.lr_patience})")
    t.add_argument("--lr-factor", type=float, help="plateau schedule: multiply the learning rate "
                   f"by this on a plateau, 0-1 (default {_DEFAULTS.lr_factor})")
    t.add_argument("--lr-schedule", choices=["plateau", "cosine"], help="plateau: ReduceLROnPlateau "
                   "(default); cosine: decay to 0 over the epochs")
    t.add_argument("--stop-patience", type=int, help="stop after this many epochs without "
                   f"improvement of --monitor (EarlyStopping; default {_DEFAULTS.stop_patience})")
    t.add_argument("--monitor", choices=["val_loss", "val_accuracy"], help="the validation score "
                   "that picks the checkpoint (model.keras) and drives ReduceLROnPlateau and "
                   "EarlyStopping (default val_loss; a run without validation uses the training "
                   "score of the same name)")
    t.add_argument("--freeze-epochs", type=int, help="train the head only for N epochs first")
    t.add_argument("--unfreeze", type=float, help="then fine-tune this fraction (<=1) or number "
                   "of top backbone layers")
    t.add_argument("--fine-tune-lr", type=float, help="learning rate of the fine-tuning stage "
                   "after --freeze-epochs (default --lr / 10)")
    t.add_argument("--freeze-backbone", action="store_true", default=None,
                   help="keep the backbone frozen throughout: train the head only")
    t.add_argument("--cache-features", action="store_true", default=None,
                   help="with --freeze-backbone: compute backbone features once, train the head "
                   "from the cache (fast on CPUs)")
    t.add_argument("--feature-views", type=int, help="augmented views cached per image (default 1)")
    t.add_argument("--class-weight", choices=["balanced"], help="balanced: weight the loss by "
                   "inverse class frequency in the training rows (default: unweighted; not with "
                   "--multitask)")
    t.add_argument("--label-smoothing", type=float, help="soften the one-hot targets by this "
                   f"amount, 0-1 (default {_DEFAULTS.label_smoothing}: none)")
    t.add_argument("--precise-bn", type=int, metavar="BATCHES", help="re-estimate BatchNorm "
                   "statistics on this many clean training batches before each validation")
    t.add_argument("--ema", type=float, metavar="MOMENTUM", help="validate and checkpoint an "
                   "exponential moving average of the weights, updated every step with this "
                   "momentum (e.g. 0.99; default 0: the weights themselves)")
    t.add_argument("--ensemble", type=int, metavar="N", help="train N members (seeds seed, "
                   "seed+1, ...) in RUN/members/ and average their probabilities (default 1)")
    t.add_argument("--folds", type=int, metavar="K", help="K-fold cross-validation over the "
                   "families of the training and validation rows together: fold models in "
                   "RUN/members/, out-of-fold predictions in RUN/folds.csv, the models averaged")
    t.add_argument("--refit", action="store_true", default=None, help="with --folds: the fold "
                   "models train without validation (last epoch kept, like the final model), then "
                   "one model trains on all the rows and is the run's model; the out-of-fold "
                   "accuracy is its estimate")
    t.add_argument("--mixed-precision", action="store_true", default=None,
                   help="compute in float16 (Keras mixed_float16 policy; for GPUs)")
    t.add_argument("--jit", action="store_true", default=None,
                   help="compile the training step with XLA (default: where Keras does, i.e. on "
                   "JAX and on a TensorFlow GPU)")
    t.add_argument("--no-jit", dest="jit", action="store_false", default=None,
                   help="never compile with XLA")
    t.add_argument("--seed", type=int, help="seed for weights, shuffling, augmentation and the "
                   f"on-the-fly validation split (default {_DEFAULTS.seed})")
    t.add_argument("--strategy", help="default | mirrored | multiworker | tpu")
    t.add_argument("--callback", dest="callbacks", action="append", metavar="MODULE:NAME[=JSON]",
                   help="your own Keras callback, run after leukonet's (repeatable): a class by "
                   "import path, with its keyword arguments as a JSON object, e.g. "
                   "keras.callbacks:CSVLogger='{\"filename\": \"log.csv\"}'; kept in the "
                   "config, so --resume runs it again")


def base_config(args):
    """FitConfig from --config (if any) plus the flags given."""
    return _start_config(args).replace(**_overrides(args))


def _start_config(args):
    """The config flags apply on top of: --config, else --preset, else the defaults."""
    from leukonet.presets import preset_config

    if args.config and args.preset:
        raise LeukonetError("give --config or --preset, not both")
    if args.config:
        from pathlib import Path

        from leukonet.models.user_backbone import resolve

        config = resolve(FitConfig.read(args.config), Path(args.config).parent)  # file: backbone
        return config.replace(run_dir=None, overwrite=False)
    if args.preset:
        return preset_config(args.preset)
    return FitConfig()


_NOT_CONFIG = {"func", "command", "demo", "resume", "config", "preset", "grid", "zip", "out", "dry_run",
               "test_manifest", "overwrite_ablation", "quiet", "verbose"}  # -q/-v: the console


def _overrides(args):
    skip = _NOT_CONFIG
    out = {k: v for k, v in vars(args).items() if k not in skip and v is not None}
    if "image_size" in out:
        out["image_size"] = parse_size(out["image_size"])
    if "multitask" in out:
        out["multitask"] = _read_json_arg(out["multitask"], "--multitask")
    if "unfreeze" in out and out["unfreeze"] > 1:
        out["unfreeze"] = int(out["unfreeze"])
    if "backbone" in out:
        from leukonet.models.user_backbone import as_spec

        out["backbone"] = as_spec(out["backbone"])  # my_net.keras: file:/absolute/my_net.keras
    if "callbacks" in out:
        from leukonet.train.user_callbacks import parse

        out["callbacks"] = [parse(text) for text in out["callbacks"]]
    return out


def _read_json_arg(text, flag):
    from pathlib import Path

    try:
        path = Path(text)
        raw = path.read_text(encoding="utf-8") if path.is_file() else text
        return json.loads(raw)
    except ValueError as e:
        raise LeukonetError(f"{flag}: not a JSON file or JSON text ({e})") from None


def run(args):
    import os
    import sys

    from leukonet.train.fit import fit

    if os.getcwd() not in sys.path:  # --callback mymodule:Name finds mymodule.py here, last
        sys.path.append(os.getcwd())

    if args.resume:
        given = _overrides(args)
        if given or args.demo or args.config or args.preset:
            raise LeukonetError("--resume takes no other flags: the run's config.json holds them")
        result = fit(resume=args.resume)
    else:
        if args.demo:
            from leukonet.train.demo import demo_config

            config = demo_config()
        else:
            config = _start_config(args)
        given = _overrides(args)
        config = config.replace(**given)
        if not (args.demo or args.config or args.preset or "backbone" in given):
            from leukonet.train.fit import backbone_from_weights

            config = backbone_from_weights(config)  # `--weights pbc` alone: its backbone
        result = fit(config)
    m = result.metrics
    if "refit" in m:
        what = "cross-validation accuracy (the refit model's estimate)"
    elif "cv" in m:
        what = "cross-validation accuracy"
    else:
        what = "validation accuracy"
    if m.get("val_accuracy") is not None:
        score = f"{what}: {m['val_accuracy']:.4f}"
    else:
        score = "no validation (last epoch kept)" if "validation" in m else f"{what}: n/a"
    print(f"run: {result.path}  {score}")
    if args.demo:
        _demo_heldout(result)
    return 0


def _demo_heldout(run):
    """The demo's held-out score with its interval over families, and what to run next."""
    from leukonet.train.demo import DEMO_DIR, heldout_manifest

    manifest, root = heldout_manifest(), DEMO_DIR / "images"
    ev = run.evaluate(manifest, root)  # its figures feed `leukonet report`
    m, fam = ev.metrics, ev.metrics["by_family"]
    lo, hi = fam["accuracy_ci95_over_families"]
    print(f"held-out accuracy: {m['accuracy']:.1%} (95 % interval over {fam['families']} "
          f"held-out cells: {lo:.1%} to {hi:.1%}) on {m['images']} images of cells the model "
          f"never saw -> {ev.dir}")
    print("next:\n"
          f"  leukonet evaluate {run.path} --manifest {manifest} --data-root {root}   "
          "# tables and figures\n"
          f"  leukonet predict {run.path} {root / 'heldout'} -o counts.csv   "
          "# one row per image and the differential count\n"
          f"  leukonet report {run.path}   # one HTML page: curves, confusion, Grad-CAM")
