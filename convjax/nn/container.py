""":class:`Sequential`: call layers one after another."""

from __future__ import annotations

from flax import nnx

__all__ = ["Sequential"]


class Sequential(nnx.Module):
    """Apply ``layers`` in order: ``Sequential(a, b, c)(x) == c(b(a(x)))``.

    A container, not a layer: it records nothing itself (``convjax.inspect`` sees the
    layers inside it). Layers are modules or plain callables; they are kept in an
    :class:`flax.nnx.List` named ``layers``, so parameter paths read ``layers/0/kernel``.
    Supports ``len``, indexing and iteration.
    """

    def __init__(self, *layers):
        for i, layer in enumerate(layers):
            if not callable(layer):
                raise ValueError(
                    f"Sequential: layers[{i}]={layer!r} is not callable; pass modules or "
                    f"functions (e.g. convjax.nn.ReLU(), not the string 'relu')."
                )
        self.layers = nnx.List(layers)

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)
