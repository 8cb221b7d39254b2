"""The network a run config names: ``config.model.name`` and the other ``model.*`` keys.

``model.name`` is a key of :data:`convjax.models.MODELS` (``"PatternCNN"``, ``"ResNet20"``
...), an importable ``"package.module:function"`` string, or a callable: a researcher's own
``nnx.Module`` trains through the engine, ablations and sweeps like the zoo's. Every factory is
called as ``factory(input_shape, num_classes, rngs=nnx.Rngs(seed), **model_kwargs)``.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["DEFAULT_MODEL", "factory_arguments", "import_path", "make_model", "model_factory"]


from convjax.train.errors import ConfigError

#: What ``model.name`` defaults to.
DEFAULT_MODEL = "PatternCNN"

#: What ``model.name`` may be, in words (for errors and the field table).
NAME_RULE = "a name of convjax.models.MODELS, a 'module:function' string or a callable"


def model_factory(name) -> Callable[..., Any]:
    """The network constructor ``config.model.name`` names.

    ``name`` is a key of ``convjax.models.MODELS`` (``"PatternCNN"``, ``"ResNet20"`` ...), an
    importable ``"package.module:function"`` string, or a callable. Every factory is called as
    ``factory(input_shape, num_classes, rngs=nnx.Rngs(seed), **model_kwargs)``, the zoo's
    signature, and returns an ``nnx.Module`` mapping ``(N, H, W, C)`` images to logits.
    """
    if callable(name):
        return name
    if not isinstance(name, str) or not name:
        raise ConfigError(f"config.model.name={name!r} must be {NAME_RULE}.")
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ConfigError(
                f"config.model.name={name!r}: module {module_name!r} cannot be imported ({e}); "
                "put its folder on PYTHONPATH or install it."
            ) from None
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise ConfigError(
                f"config.model.name={name!r}: {module_name} has no callable {attr!r}; name a "
                "function or class of that module."
            )
        return factory
    from convjax.models import MODELS

    if name not in MODELS:
        close = difflib.get_close_matches(name, list(MODELS), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigError(
            f"config.model.name={name!r} is not a model of convjax.models.{hint} Use one of "
            f"{', '.join(MODELS)}, a 'module:function' string or a callable."
        )
    return MODELS[name]


def import_path(factory) -> str:
    """``"module:qualname"`` of a callable: the string form of ``model.name`` that names it."""
    label = getattr(factory, "__qualname__", None) or getattr(factory, "__name__", None)
    return f"{getattr(factory, '__module__', '?')}:{label or repr(factory)}"


def factory_arguments(factory) -> tuple[list[str], bool]:
    """``(keyword argument names, accepts **kwargs)`` of a model factory, beyond the fixed
    ``input_shape, num_classes, rngs``."""
    target = factory
    while isinstance(target, functools.partial):  # presets such as ResNet20
        target = target.func
    if inspect.isclass(target):  # nnx.Module's metaclass hides __init__'s signature
        target = target.__init__
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):  # a builtin or C callable: nothing to check against
        return [], True
    names = [
        p.name
        for p in params.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in ("self", "input_shape", "num_classes", "rngs")
    ]
    return names, any(p.kind is p.VAR_KEYWORD for p in params.values())


def _model_kwargs(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    kwargs = {k: v for k, v in model_cfg.items() if k != "name"}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def make_model(config, input_shape, num_classes: int, *, seed: int | None = None):
    """Build ``config.model`` for images of ``input_shape`` ``(H, W, C)``, from ``config.seed``."""
    from flax import nnx

    model_cfg = (
        config["model"].to_dict() if hasattr(config["model"], "to_dict") else config["model"]
    )
    factory = model_factory(model_cfg.get("name", DEFAULT_MODEL))
    seed = config["seed"] if seed is None else seed
    return factory(
        tuple(input_shape), int(num_classes), rngs=nnx.Rngs(seed), **_model_kwargs(model_cfg)
    )
