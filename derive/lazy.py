"""A package's public names imported on first use (PEP 562), so importing the package stays cheap."""
from __future__ import annotations

import importlib
import sys

__all__ = ["lazy_names"]


def lazy_names(package: str, homes: dict[str, str], public: list[str]):
    """``(__getattr__, __dir__)`` for ``package``: ``homes`` maps each public name to the submodule that
    defines it; a name is imported when first read and then kept in the package's namespace."""
    def __getattr__(name):
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{home}"), name)
        vars(sys.modules[package])[name] = value
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(public))

    return __getattr__, __dir__
