"""``leukonet ensemble``: average finished runs' models into one run directory."""


def add_parser(sub):
    p = sub.add_parser("ensemble", help="combine finished runs into one averaged model",
                       description="The new run directory's model.keras averages the runs' class "
                       "probabilities; evaluate, predict, export and report take it like any run. "
                       "The runs must share classes; members with another input size or --nucleus-crop "
                       "get their own model input, fed by evaluate and predict.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="two or more finished runs")
    p.add_argument("--out", "-o", required=True, help="the ensemble's run directory")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func=run)


def run(args):
    from leukonet.train.ensemble import ensemble

    result = ensemble(args.runs, args.out, overwrite=args.overwrite)
    acc = result.metrics.get("val_accuracy")
    print(f"ensemble: {result.path}  validation accuracy: " + ("n/a" if acc is None else f"{acc:.4f}"))
    return 0
