"""``leukonet augment-preview``: a grid of augmented training samples, to check the policy."""
from leukonet.cli.fit import AUGMENT_HELP
from leukonet.config import FitConfig, parse_size


def add_parser(sub):
    p = sub.add_parser("augment-preview", help="draw a grid of augmented samples",
                       description="Draw random images of a manifest, each beside augmented "
                       "views of it, as fit's training augmentation would make them. The "
                       "augmentation flags take fit's defaults; 0 turns one off.")
    p.add_argument("--manifest", required=True, help="manifest CSV to draw the images from")
    p.add_argument("--data-root", required=True, help="folder the manifest paths are relative to")
    p.add_argument("-o", "--output", required=True, help="PNG to write")
    p.add_argument("--samples", type=int, default=6, help="rows: images from the manifest")
    p.add_argument("--views", type=int, default=5, help="augmented views per image")
    p.add_argument("--image-size", default="120x160", help="HxW the images are resized to "
                   "(default %(default)s)")
    p.add_argument("--nucleus-crop", type=float, default=0.0, help="crop around the nucleus first "
                   "(fraction of the short side), as fit --nucleus-crop")
    p.add_argument("--seed", type=int, default=0, help="seed of the images drawn and their "
                   "views (default %(default)s)")
    defaults = FitConfig()
    p.add_argument("--rotate", type=float, default=defaults.rotate,
                   help=f"{AUGMENT_HELP['rotate']} (default %(default)s)")
    p.add_argument("--no-flip", dest="flip", action="store_false",
                   help="no flips (default: horizontal and vertical flips)")
    for name in ("zoom", "shift", "brightness", "contrast", "hue", "saturation"):
        p.add_argument(f"--{name}", type=float, default=getattr(defaults, name),
                       help=f"{AUGMENT_HELP[name]} (default %(default)s)")
    p.set_defaults(func=run)


def run(args):
    import numpy as np

    from leukonet.data.augment import apply_policy, build_policy
    from leukonet.data.loader import ManifestLoader
    from leukonet.data.manifest import Manifest
    from leukonet.evaluate.plots import image_grid

    m = Manifest.read_csv(args.manifest)
    rows = np.random.default_rng(args.seed).choice(len(m), min(args.samples, len(m)), replace=False)
    loader = ManifestLoader(m.frame, args.data_root, parse_size(args.image_size), batch_size=1,
                            nucleus_crop=args.nucleus_crop)
    policy = build_policy(args.rotate, args.flip, args.zoom, args.shift, args.brightness,
                          args.contrast, args.hue, args.saturation)
    grid = []
    for r in rows:
        clean = loader.load(int(r))
        views = [apply_policy(policy, clean[None], args.seed * 1000 + int(r) * 10 + v)[0]
                 for v in range(args.views)]
        grid.append([clean] + [v.astype(np.uint8) for v in views])
    titles = ["original"] + [f"view {v + 1}" for v in range(args.views)]
    labels = [m.frame["label"].iloc[int(r)] for r in rows]
    out = image_grid(grid, args.output, col_titles=titles, row_titles=labels)
    print(f"wrote {out}")
    return 0
