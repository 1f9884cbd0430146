"""The ``gradaudit`` command line.  Usage errors exit 2 with one line on stderr, never a traceback."""
from __future__ import annotations

import argparse
import sys

from derive import OPS, get_op, prove_op

from .derivation_md import derivation_markdown

__all__ = ["main"]


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _cmd_list(args) -> int:
    for op in OPS.values():
        print(f"{op.name:24} {op.signature()}")
        print(f"{'':24} formulations: {', '.join(op.formulations)}")
    return 0


def _cmd_derive(args) -> int:
    if args.all == bool(args.ops):
        raise UsageError("derive needs one or more OP names or --all (not both)")
    names = list(OPS) if args.all else args.ops
    ops = []
    for name in names:
        try:
            ops.append(get_op(name))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    parts = [derivation_markdown(op, prove_op(op)) for op in ops]
    print("\n\n".join(parts))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gradaudit", description="Prove and measure softmax / cross-entropy / batch-norm gradients.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("list", help="list ops and their formulations")
    p.set_defaults(run=_cmd_list)
    p = sub.add_parser("derive", help="print an op's derivation, proof status and generated code as Markdown")
    p.add_argument("ops", nargs="*", metavar="OP")
    p.add_argument("--all", action="store_true", help="every op")
    p.set_defaults(run=_cmd_derive)
    return parser


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except UsageError as exc:
        print(f"gradaudit: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
