"""The open set of ops: built-in families and users' ops, by name, with their conventions.

An op is registered either as a plain :class:`~derive.op.Op` or as a *parametric* op: a builder that
takes conventions (``reduction="mean"``, ``correction=1``…) and returns the op they define.  Each
instance is named by its base name and the conventions that differ from the defaults, in a canonical
form — ``cross_entropy[labels=index,reduction=mean]`` — so every consumer that looks ops up by name
(kernels, references, caches, reports) keeps working, and ``get_op`` accepts that name back.
"""
from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:                      # importing them needs SymPy; this module must not, to start fast
    from .op import Op, Param

__all__ = ["OPS", "register", "register_parametric", "get_op", "op_name", "load_ops", "parametric_spec",
           "families"]

_BUILTIN_MODULE = "derive.ops.builtin"
_builtins = {"state": "unloaded"}       # unloaded → loading → loaded


def _ensure_builtins() -> None:
    """Build and register the built-in families on first use (not at import: that needs SymPy and the
    reverse-mode derivations, ~1 s, which `gradaudit --help` or `gradaudit list` should not pay)."""
    if _builtins["state"] == "unloaded":
        _builtins["state"] = "loading"
        try:
            importlib.import_module(_BUILTIN_MODULE)
        except BaseException:
            _builtins["state"] = "unloaded"
            raise
        _builtins["state"] = "loaded"


class _Ops(MutableMapping):
    """Every op by name, in registration order — the built-in families first, built on first access."""

    def __init__(self):
        self._ops: dict[str, Op] = {}

    def __getitem__(self, name):
        _ensure_builtins()
        return self._ops[name]

    def __setitem__(self, name, op):
        self._ops[name] = op

    def __delitem__(self, name):
        del self._ops[name]

    def __iter__(self) -> Iterator[str]:
        _ensure_builtins()
        return iter(self._ops)

    def __len__(self) -> int:
        _ensure_builtins()
        return len(self._ops)

    def __contains__(self, name) -> bool:
        _ensure_builtins()
        return name in self._ops

    def __repr__(self) -> str:
        return f"OPS({', '.join(self)})"


#: Every op by name, in registration order (parametric ops with their default conventions).
OPS: MutableMapping[str, Op] = _Ops()
_BUILDERS: dict[str, tuple[Callable, tuple[Param, ...]]] = {}
_INSTANCES: dict[str, Op] = {}
_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(.*)\])?$")


def register(*ops: Op, replace: bool = False) -> None:
    """Make ``ops`` known by name.  A name already taken raises unless ``replace``."""
    from .op import Op

    _ensure_builtins()                 # built-ins come first in the listing and their names are taken
    for op in ops:
        if not isinstance(op, Op):
            raise TypeError(f"register takes Op objects (from derive.define_op); got {type(op).__name__}")
        if not replace and op.name in OPS and OPS[op.name] is not op and not _same_definition(OPS[op.name], op):
            raise ValueError(f"an op named {op.name!r} is already registered (with another definition)")
        OPS[op.name] = op
        _INSTANCES[op.name] = op


def _same_definition(a: Op, b: Op) -> bool:
    """True when two ops define the same thing (a file imported twice: by ``--ops`` and by ``check``)."""
    def key(op):
        return (op.family, [(i.name, i.axes, i.role) for i in op.inputs],
                {k: repr(f.steps) for k, f in op.formulations.items()}, [m.name for m in op.mistakes])
    return key(a) == key(b)


def register_parametric(base: str, builder: Callable[..., Op], params: tuple[Param, ...], *,
                        replace: bool = False) -> Op:
    """Register ``builder(**conventions) -> Op`` under ``base``; returns (and lists) the default instance."""
    _ensure_builtins()
    if not replace and base in _BUILDERS:
        raise ValueError(f"a parametric op named {base!r} is already registered")
    _BUILDERS[base] = (builder, tuple(params))
    for key in [k for k in _INSTANCES if k == base or k.startswith(base + "[")]:
        del _INSTANCES[key]
    default = get_op(base)
    OPS[base] = default
    return default


def parametric_spec(base: str) -> tuple[Param, ...]:
    """The conventions op ``base`` accepts (empty for a plain op)."""
    _ensure_builtins()
    return _BUILDERS[base][1] if base in _BUILDERS else ()


def op_name(base: str, params: dict) -> str:
    """Canonical name of ``base`` with ``params`` (those equal to their defaults left out)."""
    from .define import instance_name

    return instance_name(base, params, parametric_spec(base))


def _parse_name(name: str) -> tuple[str, dict]:
    match = _NAME.match(name.strip()) if isinstance(name, str) else None
    if not match:
        raise ValueError(f"op must be an op name such as 'softmax' or 'cross_entropy[reduction=mean]'; got {name!r}")
    base, inside = match.group(1), match.group(2)
    params = {}
    if inside:
        for part in inside.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"op {name!r}: expected name=value inside [...]; got {part!r}")
            params[key.strip()] = value.strip()
    return base, params


def get_op(name, **params) -> Op:
    """The op called ``name`` (an :class:`Op` is returned as it is), with conventions ``params``.

    ``get_op("cross_entropy", reduction="mean")`` and ``get_op("cross_entropy[reduction=mean]")`` are the
    same op.  Unknown names, unknown conventions and bad values raise ``ValueError`` naming them.
    """
    if not params and type(name) is str and _builtins["state"] == "loaded":
        known = _INSTANCES.get(name)           # the common call, by a registered name: one dict lookup
        if known is not None:
            return known
    from .op import Op

    _ensure_builtins()
    if isinstance(name, Op):
        if params:
            return get_op(name.base_name, **{**name.params, **params})
        return name
    if isinstance(name, str) and not params and name in _INSTANCES:
        return _INSTANCES[name]
    base, given = _parse_name(name) if isinstance(name, str) else (None, {})
    if base is None or (base not in _BUILDERS and base not in OPS):
        raise ValueError(f"op must be one of {', '.join(OPS)}; got {name!r}")
    given.update(params)
    if base not in _BUILDERS:
        if given:
            raise ValueError(f"op {base!r} takes no conventions; got {', '.join(given)}")
        return OPS[base]
    builder, specs = _BUILDERS[base]
    known = {p.name: p for p in specs}
    bad = [k for k in given if k not in known]
    if bad:
        raise ValueError(f"op {base!r} has no convention {bad[0]!r}; it takes {', '.join(known) or 'none'}")
    values = {p.name: p.parse(given[p.name]) if p.name in given else p.default for p in specs}
    key = op_name(base, values)
    if key not in _INSTANCES:
        _INSTANCES[key] = builder(**values)
        if _INSTANCES[key].name != key:
            raise ValueError(f"builder of {base!r} named its op {_INSTANCES[key].name!r}, expected {key!r} "
                             "(use derive.define_op(..., params=...) inside the builder)")
    return _INSTANCES[key]


def families() -> dict[str, tuple[str, ...]]:
    """Family name → names of its registered ops, in registration order."""
    out: dict[str, list[str]] = {}
    for op in OPS.values():
        out.setdefault(op.family, []).append(op.name)
    return {k: tuple(v) for k, v in out.items()}


def load_ops(path) -> list[str]:
    """Import a user's Python file that defines and registers ops; returns the names it added.

    The file is executed as a module (like ``import``): it calls :func:`register` /
    :func:`register_parametric` (or :func:`derive.define_op` with ``register=True``).
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"ops file not found: {path}")
    before = set(OPS)
    name = f"gradaudit_ops_{file.stem}_{abs(hash(str(file.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return [n for n in OPS if n not in before]
