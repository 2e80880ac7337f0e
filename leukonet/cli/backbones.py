"""``leukonet backbones``: the registered backbones with sizes and parameter counts."""


def add_parser(sub):
    p = sub.add_parser("backbones", help="list the backbones with input sizes and parameters")
    p.set_defaults(func=run)


def run(args):
    from leukonet.models.registry import list_backbones

    print(f"{'name':20} {'params':>8} {'default':>9} {'min':>5} {'preproc':>8} {'imagenet':>9}  note")
    for s in list_backbones():
        size = f"{s.default_size[0]}x{s.default_size[1]}"
        print(f"{s.name:20} {s.params / 1e6:7.1f}M {size:>9} {s.min_size:>5} {s.preprocessing:>8} "
              f"{'yes' if s.imagenet else 'no':>9}  {s.note}")
    return 0
