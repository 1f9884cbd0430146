"""The ``gradaudit`` command line.  Usage errors exit 2 with one line on stderr, never a traceback.

Each command imports what it needs when it runs, so ``--help``, usage errors and ``list`` start in a
fraction of a second (no SymPy, Hypothesis or frameworks).
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _cmd_list(args) -> int:
    from derive.catalog import builtin_catalog, describe

    if args.ops_files:                       # users' ops are built anyway: list what is registered
        from derive import OPS

        entries = [describe(op) for op in OPS.values()]
    else:
        entries = builtin_catalog()
    for entry in entries:
        print(f"{entry['name']:24} {entry['signature']}")
        print(f"{'':24} formulations: {', '.join(entry['formulations'])}")
        if entry["conventions"]:
            shown = [f"{c['name']}={c['default']} ("
                     f"{' | '.join(c['choices']) if isinstance(c['choices'], list) else c['choices']})"
                     for c in entry["conventions"]]
            print(f"{'':24} conventions (--param): {', '.join(shown)}")
    return 0


def _params(pairs) -> dict:
    """``--param name=value`` options as a dict of strings (each op parses and validates its own)."""
    params = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(f"--param must be NAME=VALUE; got {pair!r}")
        params[name.strip()] = value.strip()
    return params


def _op(name, params=None):
    from derive import get_op

    try:
        return get_op(name, **(params or {}))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _cmd_derive(args) -> int:
    from derive import OPS, prove_op

    from .derivation_md import derivation_markdown

    if args.all == bool(args.ops):
        raise UsageError("derive needs one or more OP names or --all (not both)")
    names = list(OPS) if args.all else args.ops
    params = _params(args.param)
    ops = [_op(name, params if not args.all else None) for name in names]
    parts = [derivation_markdown(op, prove_op(op)) for op in ops]
    print("\n\n".join(parts))
    return 0


def _load_function(spec: str):
    """``path/to/file.py:function`` → the function object.  The file is imported as Python imports a
    script: its folder first on ``sys.path``, so it can import its sibling modules."""
    import importlib.util
    from pathlib import Path

    path, sep, name = spec.rpartition(":")
    if not sep or not path or not name:
        raise UsageError(f"expected FILE.py:FUNCTION, got {spec!r}")
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no such file: {path}")
    if not name.replace(".", "_").isidentifier():
        raise UsageError(f"{name!r} is not a Python function name")
    folder = str(file.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    module_spec = importlib.util.spec_from_file_location(f"gradaudit_user_{file.stem}", file)
    if module_spec is None or module_spec.loader is None:
        raise UsageError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module
    try:
        module_spec.loader.exec_module(module)
    except SystemExit as exc:
        raise UsageError(f"importing {path} called sys.exit({exc.code!r}); nothing was checked") from None
    except Exception as exc:
        raise UsageError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    fn = module
    for part in name.split("."):                 # FUNCTION may be Class.method or a layer object
        fn = getattr(fn, part, None)
    if fn is None or not callable(fn) and not (hasattr(fn, "forward") and hasattr(fn, "backward")):
        raise UsageError(f"{path} has no function {name!r}")
    return fn


def _check_signature(fn, op) -> None:
    """A plain function whose parameters cannot take the op's arguments is a usage error (exit 2)."""
    import inspect

    if not inspect.isfunction(fn):
        return
    try:
        inspect.signature(fn).bind(*range(len(op.inputs)))
    except TypeError:
        names = ", ".join(i.name for i in op.inputs)
        raise UsageError(f"{fn.__name__}{inspect.signature(fn)} cannot take the arguments of {op.name} ({names}); "
                         "see `gradaudit list` for the signature") from None


def _cmd_check(args) -> int:
    from .check import CheckResult, Finding, check_gradient
    from .check.isolate import IsolationFailure, run_isolated
    from .check.run import MAX_EXAMPLES
    from .dtypes import DTYPES

    op = _op(args.op, _params(args.param))
    if args.dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}; got {args.dtype!r}")
    if not 1 <= args.examples <= MAX_EXAMPLES:
        raise UsageError(f"--examples must be from 1 to {MAX_EXAMPLES}; got {args.examples}")
    if not args.timeout > 0:
        raise UsageError(f"--timeout must be a positive number of seconds; got {args.timeout}")

    def task():              # runs in the child: importing the file executes the user's code too
        try:
            fn = _load_function(args.target)
            _check_signature(fn, op)
        except UsageError as exc:
            return "usage", str(exc)
        return "result", check_gradient(fn, op, dtype=args.dtype, examples=args.examples, seed=args.seed,
                                        framework=args.framework)

    try:
        (status, value), output = run_isolated(task, timeout=args.timeout)
    except IsolationFailure as exc:
        status, value, output = "result", CheckResult(op.name, args.dtype, 0, [Finding("raised", "error", exc.reason)]), exc.output
    except RuntimeError as exc:
        raise UsageError(f"checking failed: {str(exc).splitlines()[0]}") from None
    if status == "usage":
        raise UsageError(value)
    value.output = output
    print(value.to_markdown())
    if output and args.show_output:
        print("Output of the checked code:\n\n```\n" + output.rstrip() + "\n```")
    return 0 if value.ok and not (args.strict and value.warnings) else 1


def _cmd_audit(args) -> int:
    from pathlib import Path

    from derive.atomic import write_text

    from .docaudit import ClaimsError, audit_document, render_markdown, summary_line

    doc = Path(args.document)
    if not doc.is_file():
        raise UsageError(f"{args.document} is a directory, not a Markdown file" if doc.is_dir()
                         else f"no such file: {args.document}")
    if args.claims is not None and not Path(args.claims).is_file():
        raise UsageError(f"--claims: no such file: {args.claims}")
    if not args.timeout > 0:
        raise UsageError(f"--timeout must be a positive number of seconds; got {args.timeout}")
    if args.out is not None and Path(args.out).is_dir():
        raise UsageError(f"--out must be a file path; {args.out} is a directory")
    try:
        audit = audit_document(doc, claims=args.claims, timeout=args.timeout, run_code=not args.no_run)
    except ClaimsError as exc:
        raise UsageError(str(exc)) from None
    except UnicodeDecodeError:
        raise UsageError(f"{args.document} is not UTF-8 text") from None
    text = render_markdown(audit)
    if args.out is None:
        print(text)
    else:
        write_text(Path(args.out), text)
        print(f"{args.out}: {summary_line(audit)}")
    failing = {"wrong", "last digit"} if args.strict else {"wrong"}
    return 1 if any(c.verdict in failing for c in audit.checks) else 0


def _cmd_report(args) -> int:
    from pathlib import Path

    from .dtypes import DTYPES
    from .report_set import OutputError, check_output_dir

    dtypes = tuple(dict.fromkeys(d.strip() for d in args.dtypes.split(",") if d.strip()))   # each once
    bad = [d for d in dtypes if d not in DTYPES]
    if bad or not dtypes:
        raise UsageError(f"--dtypes must be a comma-separated list of {', '.join(DTYPES)}; got {args.dtypes!r}")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be ≥ 1; got {args.jobs}")
    out = Path(args.out)
    try:
        check_output_dir(out)                 # before any computation; write_reports checks again
    except OutputError as exc:
        raise UsageError(str(exc)) from None
    started = _start_frameworks_report(dtypes, args.seed)
    try:
        return _write_reports(args, dtypes, out, started)
    finally:
        if started is not None:
            started.close()                   # its child, unless the report adopted it (usage error, Ctrl-C)


def _start_frameworks_report(dtypes, seed):
    """The frameworks report's cache lookup, and JAX's child when it misses (``numeric.frameworks_start``),
    begun before ``numeric.report`` is imported (SymPy, ~0.6 s in this process alone) so the child runs on
    the core those imports leave idle; the report adopts it.  None when neither framework is installed, or
    when ``numeric.report`` is imported already (no import left to overlap; the report starts the child
    itself, and a test's stub of its ``start_frameworks_report`` keeps it from starting at all)."""
    if "numeric.report" in sys.modules:
        return None
    from .frameworks_start import start

    return start(dtypes, seed)


def _write_reports(args, dtypes, out, started) -> int:
    import os

    from derive import OPS

    from .report import FAMILIES, ReportConfig, write_reports
    from .report_set import OutputError

    families = []
    for name in args.ops or list(FAMILIES):
        family = name if name in FAMILIES else next((f for f, ops in FAMILIES.items() if name in ops), None)
        if family is None:
            raise UsageError(f"report OP must be one of {', '.join(dict.fromkeys([*FAMILIES, *OPS]))}; got {name!r}")
        if family not in families:
            families.append(family)
    progress = sys.stderr.isatty() and not os.environ.get("CI")
    try:
        written = write_reports(families, ReportConfig(out=out, dtypes=dtypes, seed=args.seed, jobs=args.jobs,
                                                       progress=progress, frameworks_started=started))
    except OutputError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        print(f"gradaudit: error: writing the reports failed, {out} is unchanged: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


def _cmd_exhaustive(args) -> int:
    import time
    from pathlib import Path

    from .dtypes import DTYPES
    from .exhaustive import make_plan, parse_element, parse_fix, parse_size, write_exhaustive
    from .executors import get_executor

    if args.dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}; got {args.dtype!r}")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be ≥ 1; got {args.jobs}")
    if args.samples is not None and args.samples < 3:
        raise UsageError(f"--samples must be ≥ 3; got {args.samples}")
    if args.chunk is not None and args.chunk < 1:
        raise UsageError(f"--chunk must be ≥ 1; got {args.chunk}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out must be a directory; {out} is a file")
    try:
        varied = [parse_element(v, argument="--vary") for v in args.vary]
        fixed = [parse_fix(f, argument="--fix") for f in args.fix]
        sizes = dict(parse_size(s, argument="--size") for s in args.size)
        plan = make_plan(args.op, args.dtype, varied, fixed=fixed, sizes=sizes, seed=args.seed,
                         formulations=args.formulation or None, samples=args.samples)
        executor = get_executor(args.scheduler, args.jobs)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if plan["samples"] is not None:
        print(f"gradaudit: {args.dtype} has too many values to run them all: sampling {plan['samples']} per varied "
              "element, evenly spaced in bit-pattern order (--samples to change)", file=sys.stderr)
    print(f"gradaudit: {plan['points']} points × {len(plan['formulations'])} formulations on {executor.name}",
          file=sys.stderr)
    start = time.perf_counter()
    with executor:
        written = write_exhaustive(plan, out, executor=executor, points_per_chunk=args.chunk)
    print(f"gradaudit: {plan['points']} points in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    for path in written:
        print(path)
    return 0


def _load_user_ops(files) -> None:
    from derive import load_ops

    for path in files:
        try:
            load_ops(path)
        except FileNotFoundError:
            raise UsageError(f"--ops: no such file: {path}") from None
        except SystemExit as exc:
            raise UsageError(f"--ops {path} called sys.exit({exc.code!r})") from None
        except Exception as exc:
            raise UsageError(f"--ops {path} failed: {type(exc).__name__}: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gradaudit", description="Prove and measure softmax / cross-entropy / batch-norm gradients.")
    parser.add_argument("--ops", action="append", default=[], metavar="FILE.py", dest="ops_files",
                        help="load user-defined ops from this Python file (repeatable; it is executed)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="run chunked work on this dask.distributed scheduler (tcp://host:8786); "
                             "default: the GRADAUDIT_SCHEDULER environment variable, else local processes")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("list", help="list ops and their formulations")
    p.set_defaults(run=_cmd_list)
    p = sub.add_parser("derive", help="print an op's derivation, proof status and generated code as Markdown")
    p.add_argument("ops", nargs="*", metavar="OP")
    p.add_argument("--all", action="store_true", help="every op")
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="a convention of the ops, e.g. reduction=mean")
    p.set_defaults(run=_cmd_derive)
    p = sub.add_parser("check", help="check a hand-written op against the certified reference "
                                     "(exit 0 right, 1 wrong, 2 usage error)",
                       description="Check FUNCTION of FILE.py against the certified reference of OP. This EXECUTES the "
                                   "file (importing it) and the function, in a child process: what it prints is kept "
                                   "apart, and exiting, crashing or hanging (--timeout) is a failure, never a pass.")
    p.add_argument("target", metavar="FILE.py:FUNCTION")
    p.add_argument("--op", required=True, help="the op the function implements (see `gradaudit list`)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="a convention of the op, e.g. reduction=mean, labels=index, correction=1 (repeatable)")
    p.add_argument("--dtype", default="float64", help="float16, bfloat16, float32 or float64 (default float64)")
    p.add_argument("--examples", type=int, default=200, help="random examples per search (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for the whole check (default 120)")
    p.add_argument("--framework", choices=("numpy", "torch", "jax"), default=None,
                   help="what FUNCTION takes (default: detected)")
    p.add_argument("--strict", action="store_true", help="warnings (shape quirks, wider dtypes) fail too")
    p.add_argument("--show-output", action="store_true", help="print what the checked code printed, after the report")
    p.set_defaults(run=_cmd_check)
    p = sub.add_parser("audit", help="run a Markdown document's Python blocks, check their printed outputs and its "
                                     "inline/table numbers (exit 0 right, 1 a number is wrong, 2 usage error)")
    p.add_argument("document", metavar="DOC.md")
    p.add_argument("--out", default=None, help="write the Markdown audit here (default: print it)")
    p.add_argument("--claims", default=None, metavar="CLAIMS.toml", help="extra claims pinned to op calls")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per code block (default 30)")
    p.add_argument("--no-run", action="store_true", help="do not execute code blocks (outputs: consistency only)")
    p.add_argument("--strict", action="store_true", help="numbers off by less than one unit in the last digit "
                                                          "count as wrong too")
    p.set_defaults(run=_cmd_audit)
    p = sub.add_parser("report", help="write the Markdown derivation and stability reports (the main job)")
    p.add_argument("ops", nargs="*", metavar="OP", help="op or family names (default: all)")
    p.add_argument("--out", default="reports",
                   help="output directory (default reports/), replaced as a whole by this run's set (written "
                        "beside it, then swapped in; files that were not part of the old set are kept)")
    p.add_argument("--dtypes", default="float16,bfloat16,float32,float64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1,
                   help="processes for the report's work: proofs, sweep points, thresholds, audit, figures")
    p.set_defaults(run=_cmd_report)
    p = sub.add_parser("exhaustive", help="every value of one or two input elements in a low-precision dtype, "
                                          "judged against the certified reference")
    p.add_argument("op", metavar="OP")
    p.add_argument("--dtype", required=True, help="float16 or bfloat16 (every value) or float32 (sampled)")
    p.add_argument("--vary", action="append", required=True, metavar="ELEMENT",
                   help="element to run through every value, e.g. 'z[0,0]' (once or twice)")
    p.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                   help="fix an input ('z=[[0,1,2]]') or one element ('z[0,1]=2.5'); the rest is drawn from --seed")
    p.add_argument("--size", action="append", default=[], metavar="AXIS=LENGTH",
                   help="axis length for drawn inputs, e.g. k=16 (default 8; the independent axis 1)")
    p.add_argument("--formulation", action="append", default=[], help="only this formulation (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=None, help="grid points per element for float32/float64")
    p.add_argument("--chunk", type=int, default=None, help="points per chunk (default: about a second of work)")
    p.add_argument("--jobs", type=int, default=1, help="local processes when no scheduler is given")
    p.add_argument("--scheduler", default=argparse.SUPPRESS, metavar="ADDRESS", help="as the global --scheduler")
    p.add_argument("--out", default="reports/exhaustive", help="output directory (default reports/exhaustive/)")
    p.set_defaults(run=_cmd_exhaustive)
    return parser


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        _load_user_ops(args.ops_files)
        if not getattr(args, "scheduler", None):
            return args.run(args)
        if "://" not in args.scheduler:
            raise UsageError(f"--scheduler must be an address such as tcp://127.0.0.1:8786; got {args.scheduler!r}")
        from .executors import scheduler_scope

        with scheduler_scope(args.scheduler):     # --scheduler reaches every command (GRADAUDIT_SCHEDULER)
            return args.run(args)
    except UsageError as exc:
        print(f"gradaudit: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("gradaudit: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The ``gradaudit`` program: :func:`main`, then exit with its status.

    The process ends with ``os._exit`` once the exit handlers have run (worker pools shut down, temporary
    directories removed) and the output streams are flushed: what the interpreter's own teardown would
    add is freeing every object one by one, which takes 0.3–0.5 s once torch is imported (the report's
    frameworks page) and changes nothing outside the process.  (With a profiler or tracer attached, which
    writes its data at teardown, the process exits normally.)  ``os._exit`` also keeps a Ctrl-C (130)
    from being turned into a SIGINT death: CPython 3.11 can leave its "unhandled KeyboardInterrupt" flag
    set when the interrupt landed inside an import, even though :func:`main` handled it, and would then
    kill the process with SIGINT at shutdown (status −2)."""
    import atexit
    import os

    code = main()
    if code != 130 and (sys.getprofile() or sys.gettrace()):
        sys.exit(code)        # a profiler, tracer or debugger (cProfile, coverage): its teardown writes its data
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):      # the reader went away, or the stream was closed
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
