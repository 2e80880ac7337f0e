"""``leukonet ablate``: a grid of fit options, one ordinary run per cell."""
from leukonet.cli.fit import add_fit_arguments, base_config


def add_parser(sub):
    p = sub.add_parser("ablate", help="run a grid of fit options (image size x batch size ...)",
                       description="Each cell is a leukonet run in OUT/<cell>/; finished cells "
                       "are skipped on a rerun. Other fit options apply to every cell.")
    p.add_argument("--grid", action="append", required=True, metavar="AXIS=V1,V2,...",
                   help="an axis: any fit option (image_size, batch_size, backbone, lr, ...) "
                   "or fraction (a low-data subset); repeat for more axes")
    p.add_argument("--zip", action="store_true", help="take the axes' values in step, not the product")
    p.add_argument("--out", required=True, help="ablation folder")
    p.add_argument("--test-manifest", help="evaluate every cell on this manifest")
    p.add_argument("--dry-run", action="store_true", help="print the plan and a cost estimate")
    p.add_argument("--overwrite", dest="overwrite_ablation", action="store_true",
                   help="reuse an --out made with another grid")
    add_fit_arguments(p)
    p.set_defaults(func=run)


def run(args):
    from leukonet.ablate import ablate, estimate, parse_grid, plan, summarise

    base = base_config(args)
    grid = parse_grid(args.grid)
    cells = plan(base, grid, args.zip)
    if args.dry_run:
        n = 0
        if base.manifest:
            from leukonet.data.manifest import Manifest

            n = len(Manifest.read_csv(base.manifest))
        print(f"{len(cells)} cells ({'zip' if args.zip else 'product'} of {', '.join(grid)})")
        print(estimate(base, cells, n).to_string(index=False))
        print("relative_cost: thousands of 96x128 image-epochs; time one cell to calibrate")
        return 0
    table = ablate(base, grid, args.out, zip_axes=args.zip, test_manifest=args.test_manifest,
                   overwrite=args.overwrite_ablation)
    print(summarise(table, list(grid)).to_string(index=False))
    failed = table["error"].fillna("").ne("").sum() if "error" in table else 0
    print(f"wrote {args.out}/ablation.csv" + (f" ({failed} cell(s) failed; see the error column)" if failed else ""))
    return 1 if failed == len(table) else 0
