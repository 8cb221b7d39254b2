"""The fixed table of convolution implementations: ``conv(..., impl=NAME)``.

A read-only mapping built here from the modules that define the entries; nothing registers
itself at import and nothing can be added at run time, so the set of names (and what each
computes) is the same in every process. To compare implementations on a machine, use
:mod:`convjax.tuning`, which measures and returns a name to pass as ``impl``.
"""

from __future__ import annotations

import types

from convjax.functional.conv_grad import LAX_IMPL, MATMUL_GRAD_IMPL
from convjax.functional.conv_impls import DIRECT_IMPL, IM2COL_IMPL, ConvImpl
from convjax.functional.conv_winograd import WINOGRAD_IMPL

__all__ = ["CONV_IMPLS", "get_conv_impl"]

#: name -> :class:`~convjax.functional.conv_impls.ConvImpl` (read-only).
CONV_IMPLS: types.MappingProxyType[str, ConvImpl] = types.MappingProxyType(
    {
        impl.name: impl
        for impl in (LAX_IMPL, MATMUL_GRAD_IMPL, IM2COL_IMPL, DIRECT_IMPL, WINOGRAD_IMPL)
    }
)


def get_conv_impl(name) -> ConvImpl:
    """Look up ``name`` in :data:`CONV_IMPLS`, raising a ``ValueError`` listing the choices."""
    if not isinstance(name, str) or name not in CONV_IMPLS:
        raise ValueError(
            f"impl={name!r} is not a known convolution implementation; use one of "
            f"{', '.join(repr(k) for k in CONV_IMPLS)}."
        )
    return CONV_IMPLS[name]
