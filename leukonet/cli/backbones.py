"""``leukonet backbones``: the registered backbones with sizes and parameter counts."""


def add_parser(sub):
    p = sub.add_parser("backbones", help="list the backbones with input sizes and parameters, "
                       "and the weights leukonet ships")
    p.set_defaults(func=run)


def run(args):
    from leukonet.models import weights
    from leukonet.models.registry import list_backbones

    print(f"{'name':20} {'params':>8} {'default':>9} {'min':>5} {'preproc':>8} {'imagenet':>9}  "
          "shipped weights / note")
    for s in list_backbones():
        size = f"{s.default_size[0]}x{s.default_size[1]}"
        shipped = weights.for_backbone(s.name)
        print(f"{s.name:20} {s.params / 1e6:7.1f}M {size:>9} {s.min_size:>5} {s.preprocessing:>8} "
              f"{'yes' if s.imagenet else 'no':>9}  "
              + "; ".join(([f"weights: {', '.join(shipped)}"] if shipped else []) + ([s.note] if s.note else [])))
    print()
    print("shipped weights (--weights NAME to fine-tune; `leukonet predict NAME ...` as they are):")
    for w in weights.list_weights():
        print(f"  {w.name}{' (' + ', '.join(w.aliases) + ')' if w.aliases else ''}: {w.summary}")
    return 0
