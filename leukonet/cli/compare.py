"""``leukonet compare``: the accuracy difference of two evaluations, with its noise."""


def add_parser(sub):
    p = sub.add_parser("compare", help="is run A better than run B on the same images? (paired, by family)",
                       description="Pairs two evaluations of one manifest image by image and "
                       "gives A's accuracy minus B's with a 95 % interval from a paired bootstrap "
                       "over families (the copies of one cell are right or wrong together), and "
                       "how their errors overlap.")
    p.add_argument("a", metavar="A", help="run directory, evaluation folder, predictions.csv, or the "
                   "folds.csv of a --folds run (out-of-fold predictions over all of TRAIN)")
    p.add_argument("b", metavar="B", help="the same for the run to compare with")
    p.add_argument("--eval", default="test", help="for run directories: which RUN/eval/NAME "
                   "(the evaluated manifest's file name without .csv; default test)")
    p.add_argument("--manifest", help="take families from this manifest (for evaluations written "
                   "before predictions.csv had a group column)")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("-o", "--output", help="also write the result as JSON here")
    p.set_defaults(func=run)


def run(args):
    from leukonet import io
    from leukonet.errors import LeukonetError
    from leukonet.evaluate.compare import compare, format_comparison

    if args.resamples < 100:
        raise LeukonetError(f"--resamples {args.resamples}: use at least 100 (2000 is the default)")
    result = compare(args.a, args.b, eval_name=args.eval, manifest=args.manifest,
                     resamples=args.resamples, seed=args.seed)
    print(format_comparison(result))
    if args.output:
        io.write_json(args.output, result)
    return 0
