"""The child process of :mod:`numeric.docaudit.runner` (run as ``python -I -c <this file>``; imports
nothing from gradaudit).  Reads one JSON request per line from the protocol pipe, runs the block in one
namespace shared by all blocks (like a notebook), and answers one JSON line:
``{"status": "ok"|"error"|"exit"|"skipped", "stdout", "stderr", "error"}``.
Stray writes to file descriptors 0/1 cannot corrupt the protocol: they are moved to private descriptors
and the standard ones point at /dev/null."""
import contextlib
import importlib
import io
import json
import os
import sys
import traceback

proto_in = os.fdopen(os.dup(0), "r", encoding="utf-8")
proto_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
devnull = os.open(os.devnull, os.O_RDWR)
os.dup2(devnull, 0)
os.dup2(devnull, 1)
sys.stdin = open(os.devnull, encoding="utf-8")
namespace = {"__name__": "__main__", "__builtins__": __builtins__}

for request_line in proto_in:
    request = json.loads(request_line)
    out, err = io.StringIO(), io.StringIO()
    reply = {"status": "ok", "error": ""}
    missing = []
    for module in request.get("modules", []):
        try:
            importlib.import_module(module)
        except Exception as exc:          # ImportError, or a broken install
            missing.append(f"{module} is not importable ({type(exc).__name__}: {exc})")
    if missing:
        reply.update(status="skipped", error="; ".join(missing))
    else:
        try:
            code = compile(request["code"], request["name"], "exec")
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                exec(code, namespace)
        except SystemExit as exc:
            reply.update(status="exit", error=f"the block called sys.exit({exc.code!r})")
        except BaseException as exc:
            tb = traceback.extract_tb(exc.__traceback__)
            where = next((f"line {f.lineno}" for f in reversed(tb) if f.filename == request["name"]), "")
            reply.update(status="error", error=f"{type(exc).__name__}: {exc}" + (f" ({where} of the block)" if where else ""))
    reply.update(stdout=out.getvalue(), stderr=err.getvalue()[-4000:])
    proto_out.write(json.dumps(reply) + "\n")
    proto_out.flush()
