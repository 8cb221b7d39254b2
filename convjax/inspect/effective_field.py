"""Effective receptive field (Luo, Li, Urtasun & Zemel, NeurIPS 2016): what a unit really uses.

The theoretical receptive field (:mod:`convjax.inspect.receptive_field`) says which input
pixels *can* reach a unit. Luo et al. measure how much each one *does*: the gradient of a
centre output unit with respect to the input, averaged over many inputs. Their findings,
which ``scripts/insight_figures.py`` reproduces on the model zoo: the map is roughly Gaussian;
for a plain stack of ``n`` convolutions its width grows as ``sqrt(n)`` while the theoretical
field grows as ``n``, so it fills a shrinking fraction of the theoretical field; pooling
(subsampling) and dilation widen it.

Definition used here, for a layer with output ``A``: the unit is the centre position of
``A`` (``size // 2`` per spatial axis), summed over ``A``'s channels; for each input ``x_n``
the map is ``sum_c |d unit(x_n) / d x_n[..., c]|`` (absolute value per example, so the signs
of different inputs do not cancel), averaged over the ``N`` inputs. For a linear network the
gradient does not depend on ``x``, and the map is the absolute value of the repeated
convolution of the kernels (``tests/test_effective_field.py`` checks exactly that).

Numbers reported per layer, from the map ``p`` normalised to sum 1:

* ``mass_fraction(q)``: the fewest pixels holding a fraction ``q`` of the mass (largest first),
  divided by the pixels of the unit's theoretical field (its bounding box clipped to the
  input; the whole input when the field is not known analytically).
* ``sigma`` and ``centre``: standard deviation and mean of ``p`` per spatial axis, i.e. the
  2-D Gaussian with the same first and second moments (axis-aligned); for a Gaussian map
  these are its parameters.
* ``gaussian_r2``: ``1 - sum (p - g)^2 / sum (p - mean p)^2`` over the theoretical field,
  ``g`` that Gaussian discretised on the pixel grid; near 1 when the map is Gaussian.

The model runs as a copy in evaluation mode (BatchNorm on running statistics): in training
mode the batch statistics would couple the inputs, and the per-example gradient would not be
the unit's own.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from convjax.functional.shapes import spatial_axes
from convjax.inspect import _tracing
from convjax.inspect import capture as _capture
from convjax.inspect.receptive_field import ReceptiveField, analytic_fields

__all__ = ["EffectiveReceptiveField", "effective_receptive_field"]


@dataclasses.dataclass(frozen=True)
class EffectiveReceptiveField:
    """The effective receptive field of one layer's centre unit (see the module docstring).

    Attributes:
      layer: the layer name.
      unit: spatial index of the probed position in the layer's output (``()`` for a layer
        without spatial axes, where every output is summed).
      map: ``(*input spatial)`` mean over the inputs of ``sum_c |d unit / d x|``; not
        normalised (its sum is the mean gradient mass).
      theoretical: the layer's analytic :class:`ReceptiveField` (or ``"global"``, ``"flat"``,
        None when unknown).
      region: inclusive ``(first, last)`` input pixel per spatial axis of the unit's theoretical
        field, clipped to the input (the whole input when the field is not known).
      sigma, centre: per spatial axis, the standard deviation and mean of the normalised map.
      gaussian_r2: how well the moment-matched Gaussian fits the map inside ``region``.
      num_inputs: how many inputs the map averages.
    """

    layer: str
    unit: tuple[int, ...]
    map: np.ndarray
    theoretical: Any
    region: tuple[tuple[int, int], ...]
    sigma: tuple[float, ...]
    centre: tuple[float, ...]
    gaussian_r2: float
    num_inputs: int

    @classmethod
    def from_map(cls, layer, unit, map, theoretical, region, num_inputs):
        """Build the record from a map: its moments and Gaussian fit are computed here.

        ``map`` may be any non-negative array of the input's spatial shape, e.g. the mean of
        several normalised maps (one per random weight draw).
        """
        m = np.asarray(map, np.float64)
        n = m.ndim
        total = m.sum()
        if total > 0:
            p = m / total
            centre, sigma = _moments(p)
            r2 = _gaussian_r2(p, centre, sigma, region)
        else:  # no gradient reaches the input (a dead ReLU network): nothing to fit
            centre, sigma, r2 = (float("nan"),) * n, (float("nan"),) * n, float("nan")
        return cls(
            layer=layer,
            unit=tuple(unit),
            map=m,
            theoretical=theoretical,
            region=tuple(region),
            sigma=sigma,
            centre=centre,
            gaussian_r2=r2,
            num_inputs=int(num_inputs),
        )

    @property
    def region_size(self) -> tuple[int, ...]:
        """Pixels of :attr:`region` per axis."""
        return tuple(hi - lo + 1 for lo, hi in self.region)

    def mass_fraction(self, mass: float = 0.95) -> float:
        """Fraction of the theoretical field's pixels that hold ``mass`` of the map's mass.

        The fewest pixels, taken largest first, whose sum reaches ``mass`` of the total,
        divided by the number of pixels of :attr:`region`.
        """
        if not 0 < mass <= 1:
            raise ValueError(f"mass={mass!r} must be in (0, 1], e.g. 0.95 for 95% of the mass.")
        values = np.sort(self.map.ravel())[::-1]
        total = values.sum()
        if total <= 0:
            return 0.0
        cumulative = np.cumsum(values) / total
        # A relative 1e-12 absorbs float rounding of a sum that reaches `mass` exactly.
        count = int(np.searchsorted(cumulative, mass - 1e-12) + 1)
        return count / float(np.prod(self.region_size))


def _moments(p: np.ndarray):
    """Mean and standard deviation of the distribution ``p`` (sums to 1) per axis."""
    centre, sigma = [], []
    for axis in range(p.ndim):
        others = tuple(a for a in range(p.ndim) if a != axis)
        marginal = p.sum(axis=others) if others else p
        coord = np.arange(p.shape[axis], dtype=np.float64)
        mu = float((marginal * coord).sum())
        centre.append(mu)
        sigma.append(float(np.sqrt(max((marginal * (coord - mu) ** 2).sum(), 0.0))))
    return tuple(centre), tuple(sigma)


def _gaussian_r2(p: np.ndarray, centre, sigma, region) -> float:
    """R^2 of the axis-aligned Gaussian with ``centre``/``sigma`` against ``p`` in ``region``."""
    if any(s <= 0 for s in sigma):
        return float("nan")  # a single pixel: no Gaussian to fit
    g = np.ones(p.shape, np.float64)
    for axis, (mu, s) in enumerate(zip(centre, sigma)):
        coord = np.arange(p.shape[axis], dtype=np.float64)
        shape = [1] * p.ndim
        shape[axis] = -1
        g = g * np.exp(-0.5 * ((coord - mu) / s) ** 2).reshape(shape)
    g = g / g.sum()
    window = tuple(slice(lo, hi + 1) for lo, hi in region)
    pw, gw = p[window], g[window]
    total = ((pw - pw.mean()) ** 2).sum()
    if total <= 0:
        return float("nan")
    return float(1.0 - ((pw - gw) ** 2).sum() / total)


def _clip(region, spatial):
    return tuple((max(lo, 0), min(hi, n - 1)) for (lo, hi), n in zip(region, spatial))


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 5))
def _erf_core(graphdef, state, x, names, units, channels_last):
    n_spatial = x.ndim - 2
    channel_axis = x.ndim - 1 if channels_last else 1

    def unit_value(x, name, unit):
        act = _capture._run(graphdef, state, x, (name,), {}, True)[1][name]
        if unit is None:  # no spatial axes: the sum of every output of each example
            return act.sum()
        axes = spatial_axes(act.ndim, n_spatial, channels_last)
        index = [slice(None)] * act.ndim
        for a, u in zip(axes, unit):
            index[a] = u
        # Sum over the batch (examples are independent in evaluation mode) and channels.
        return act[tuple(index)].sum()

    maps = []
    for name, unit in zip(names, units):
        grad = jax.grad(unit_value)(x, name, unit)
        maps.append(jnp.abs(grad).sum(axis=channel_axis).mean(axis=0))
    return maps


def effective_receptive_field(
    model,
    x,
    layers=None,
    *,
    unit: Sequence[int] | None = None,
    channels_last: bool = True,
) -> dict[str, EffectiveReceptiveField]:
    """Effective receptive field of the centre unit of each named layer (Luo et al. 2016).

    Args:
      model: a ``flax.nnx`` model built from ``convjax.nn`` layers, with random or trained
        weights (not modified; a copy runs in evaluation mode).
      x: ``(N, *spatial, C)`` inputs to average over: random ones (``jax.random.normal``, as
        in the paper) or data. More inputs give a smoother map (the paper averages many).
      layers: a layer name, a sequence of names, or None for every layer call whose output
        keeps the input's spatial axes.
      unit: the probed spatial index (one per spatial axis) for every layer; default the
        centre ``size // 2`` of each layer's output.
      channels_last: layout of ``x`` and of the layers' outputs.

    Returns:
      ``{layer name: EffectiveReceptiveField}`` in call order.

    Raises:
      ValueError: a bad ``x`` or ``unit``, or a name that is no layer call of the model.

    >>> erf = effective_receptive_field(model, jax.random.normal(key, (64, 28, 28, 1)),
    ...                                 "features.layers.12")["features.layers.12"]
    ... # doctest: +SKIP
    >>> erf.sigma, erf.mass_fraction(0.95)   # doctest: +SKIP
    """
    x = jnp.asarray(x)
    if x.ndim < 3 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"x has shape {tuple(x.shape)} and dtype {x.dtype}; pass a float batch "
            f"(N, *spatial, C) of inputs to average over, e.g. "
            f"jax.random.normal(key, (64, 28, 28, 1))."
        )
    calls = _tracing.trace_model(model, tuple(x.shape[1:]), batch_size=x.shape[0])
    fields = dict(zip([c.name for c in calls], analytic_fields(calls, tuple(x.shape))))
    shapes = {c.name: c.output_shape for c in calls}
    if layers is None:
        names = tuple(c.name for c in calls if len(c.output_shape) == x.ndim)
    else:
        names = _capture._check_names("layers", layers, allow_all=False)
        missing = [n for n in names if n not in shapes]
        if missing:
            known = ", ".join(repr(c.name) for c in calls[:16])
            raise ValueError(
                f"layers names {missing} that are no layer call of this model; the layer "
                f"calls are {known}{' ...' if len(calls) > 16 else ''}."
            )
    n_spatial = x.ndim - 2
    in_spatial = tuple(x.shape[a] for a in spatial_axes(x.ndim, n_spatial, channels_last))
    units = []
    for name in names:
        shape = shapes[name]
        if len(shape) != x.ndim:
            units.append(None)
            continue
        out_spatial = tuple(shape[a] for a in spatial_axes(len(shape), n_spatial, channels_last))
        u = tuple(s // 2 for s in out_spatial) if unit is None else tuple(unit)
        if len(u) != n_spatial or any(not 0 <= i < s for i, s in zip(u, out_spatial)):
            raise ValueError(
                f"unit={unit!r} is not a spatial index of layer {name!r}'s output (spatial "
                f"shape {out_spatial}); pass one index per spatial axis inside it, or None "
                f"for the centre."
            )
        units.append(u)
    graphdef, state = nnx.split(model)
    maps = _erf_core(graphdef, state, x, names, tuple(units), channels_last)
    out = {}
    for name, u, m in zip(names, units, maps):
        field = fields.get(name)
        if isinstance(field, ReceptiveField) and u is not None:
            region = _clip(field.region(u), in_spatial)
        else:
            region = tuple((0, s - 1) for s in in_spatial)
        out[name] = EffectiveReceptiveField.from_map(
            name, () if u is None else u, m, field, region, x.shape[0]
        )
    return out
