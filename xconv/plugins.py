"""User plugins: Python files or modules the user names with ``--plugin``.

A plugin is the user's own code (never something read from a model file):
it typically registers a handler for a layer xconv refuses to interpret,
e.g. ``@xconv.frontends.keras.register_layer("MyLayer")``.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterable

from .errors import XconvError

log = logging.getLogger(__name__)


def load_plugins(specs: Iterable[str]) -> list[ModuleType]:
    """Import each ``FILE.py`` or ``package.module``; returns the modules."""
    mods: list[ModuleType] = []
    for spec in specs:
        p = Path(spec)
        try:
            if p.suffix == ".py" or p.exists():
                if not p.is_file():
                    raise XconvError(f"--plugin {spec}: no such file")
                name = f"xconv_plugin_{p.stem}"
                s = importlib.util.spec_from_file_location(name, p)
                if s is None or s.loader is None:
                    raise XconvError(f"--plugin {spec}: cannot import it as a Python file")
                mod = importlib.util.module_from_spec(s)
                sys.modules[name] = mod
                s.loader.exec_module(mod)
            else:
                mod = importlib.import_module(spec)
        except XconvError:
            raise
        except Exception as e:  # noqa: BLE001 - the user's code failed; say where
            raise XconvError(f"--plugin {spec}: importing it failed: {type(e).__name__}: {e}") from e
        log.info("plugin %s loaded", spec)
        mods.append(mod)
    return mods
