"""The ``leukonet`` command line: one module per subcommand, each a thin layer over the API.

Every module exposes ``add_parser(subparsers)``, which registers its subcommand and sets
``func`` to a function taking the parsed arguments and returning an exit status.
"""
import argparse
import importlib
import sys

from leukonet import __version__
from leukonet.errors import LeukonetError

# Imported lazily so `leukonet manifest ...` never pays for importing TensorFlow.
_SUBCOMMANDS = ["manifest", "demo_data", "fit", "backbones", "augment_preview", "evaluate", "ensemble", "ablate", "compare"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leukonet",
        description="Train and evaluate white-blood-cell image classifiers (Keras 3).",
    )
    parser.add_argument("--version", action="version", version=f"leukonet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMANDS:
        importlib.import_module(f"leukonet.cli.{name}").add_parser(sub)
    _add_verbosity(parser)
    return parser


def _add_verbosity(parser):
    """-q / -v on every command and subcommand, before or after its arguments."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="print only warnings, errors and the result (no progress bars, "
                            "no line per epoch)")
    group.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="print more: Keras' progress lines, TensorFlow's own log, debug lines")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_verbosity(child)


def verbosity(args):
    from leukonet import console

    if getattr(args, "quiet", False) and getattr(args, "verbose", False):
        raise LeukonetError("-q and -v contradict each other: give one")
    return console.QUIET if getattr(args, "quiet", False) else (
        console.VERBOSE if getattr(args, "verbose", False) else console.NORMAL)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from leukonet import console

    try:
        console.set_verbosity(verbosity(args))
        return int(args.func(args) or 0)
    except LeukonetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)  # fit has logged how to resume
        return 130


def console():
    """The ``leukonet`` executable. After Ctrl-C, exit at once: a data-loader thread still
    blocked in TensorFlow would otherwise keep the interpreter alive. Every artifact is
    already written atomically and the run's lock released by then."""
    import os

    from leukonet import console

    if not ({"-v", "--verbose"} & set(sys.argv[1:])):
        console.quiet_native_logs()  # TensorFlow's C++ log lines (console.py says why)
    try:
        code = main()
    finally:
        console.restore_native_logs()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
