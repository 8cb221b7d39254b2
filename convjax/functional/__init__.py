"""Layer 1: pure functions on arrays (jax and numpy only; no flax, optax or tfds).

``import convjax.functional as cf``. Every op takes batched or unbatched input, is
channels-last by default (``channels_last=False`` for channels-first), and works under
``jax.jit``, ``jax.vmap`` and ``jax.grad``.

Each block below is owned by one module; add names to its block only.
"""

# --- shape rules (shapes.py) ---
from convjax.functional.shapes import (
    PADDING_STRINGS,
    conv_output_shape,
    conv_output_size,
    conv_transpose_output_size,
    effective_kernel_size,
    normalize_tuple,
    resolve_padding,
)

# --- convolution (conv.py, padding.py, conv_impls.py) ---

# --- dense, activations, losses, initialisers (dense.py, activations.py, losses.py, init.py) ---

# --- pooling (pooling.py) ---
