"""Config files: :func:`load_config` reads one (the single loader for experiments, configs and
tests), :func:`config_source` writes a ready one (a sweep's ``best_config.py``)."""

from __future__ import annotations

import importlib.util
import math
import pprint
import sys
from pathlib import Path

import ml_collections

from convjax.train.config import _plain
from convjax.train.errors import ConfigError
from convjax.train.factory import import_path

__all__ = ["config_source", "load_config"]


def _package_root(path: Path) -> Path | None:
    """The folder above the outermost package holding ``path`` (None if not in a package)."""
    root = None
    folder = path.parent
    while (folder / "__init__.py").exists():
        root = folder.parent
        folder = folder.parent
    return root


def load_config(spec: str | Path, arg: str | None = None) -> ml_collections.ConfigDict:
    """``get_config(arg)`` of a config file; ``spec`` is ``"path.py"`` or ``"path.py:arg"``.

    The one loader of config files (experiments, configs, tests). A file inside a package
    (``configs/ablations/pooling.py`` imports ``configs.ablations.common``) gets the folder
    above its package on ``sys.path`` first.

    Raises:
      ConfigError: the file does not exist or has no ``get_config``.
    """
    spec = str(spec)
    if arg is None and ":" in Path(spec).name:
        spec, _, arg = spec.rpartition(":")
    path = Path(spec).resolve()
    if not path.is_file():
        raise ConfigError(f"config file {spec!r} does not exist; pass the path of a .py config.")
    root = _package_root(path)
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module_spec = importlib.util.spec_from_file_location(f"_convjax_config_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"config file {spec!r} has no get_config(arg=None) function.")
    return module.get_config(arg or None)


def config_source(config, *, docstring: str) -> str:
    """Python source of a ready config file whose ``get_config()`` returns ``config``.

    Only literals are written (ints, floats, strings, bools, None, tuples, lists, dicts), so
    the file needs nothing but ml_collections; a callable ``model.name`` is written as its
    importable ``"module:qualname"``.

    Raises:
      ConfigError: a value that is not such a literal, or a non-finite float.
    """
    plain = _plain(config)
    name = plain.get("model", {}).get("name") if isinstance(plain.get("model"), dict) else None
    if callable(name):
        plain["model"] = {**plain["model"], "name": import_path(name)}

    def check(x, path):
        if isinstance(x, dict):
            for k, v in x.items():
                check(v, f"{path}.{k}" if path else k)
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                check(v, f"{path}[{i}]")
        elif not (x is None or isinstance(x, (bool, int, float, str))):
            raise ConfigError(
                f"config_source: field {path!r} holds {type(x).__name__} {x!r}, which a config "
                "file cannot write as a literal; use ints, floats, strings, tuples or dicts."
            )
        if isinstance(x, float) and not math.isfinite(x):
            raise ConfigError(f"config_source: field {path!r} = {x!r} is not finite.")

    check(plain, "")
    body = pprint.pformat(plain, indent=2, width=92, sort_dicts=True)
    doc = docstring.strip().replace('"""', "'''")
    lines = body.splitlines()
    body = "\n".join([lines[0]] + ["    " + ln for ln in lines[1:]])
    return (
        f'"""{doc}\n"""\n\nimport ml_collections\n\n\n'
        "def get_config(arg=None):\n"
        "    del arg  # a ready config: every value is fixed\n"
        f"    config = ml_collections.ConfigDict({body})\n"
        "    config.lock()\n"
        "    return config\n"
    )
