"""``leukonet demo-data DIR``: write the small SYNTHETIC 4-class demo data set."""


def add_parser(sub):
    p = sub.add_parser("demo-data", help="write the synthetic demo data set (SYNTHETIC cells)",
                       description="Write a small procedurally drawn 4-class cell data set "
                       "(SYNTHETIC, not real blood) with families of augmented copies.")
    p.add_argument("dir", help="folder to create (DIR/TRAIN/<class>/, DIR/TEST/<class>/)")
    p.add_argument("--seed", type=int, default=0, help="seed of the drawn cells and their "
                   "copies (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace demo data made with other settings")
    p.set_defaults(func=run)


def run(args):
    from leukonet.data.demo import make_demo_data

    root = make_demo_data(args.dir, seed=args.seed, overwrite=args.overwrite)
    n = sum(1 for _ in root.glob("*/*/*.png"))
    print(f"wrote {n} SYNTHETIC demo images to {root} (see {root / 'README.txt'})")
    return 0
