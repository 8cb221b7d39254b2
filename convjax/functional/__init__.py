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

# --- convolution (conv.py, padding.py, conv_impls.py, conv_grad.py, conv_table.py) ---
# isort: split
from convjax.functional.conv import (
    conv,
    conv1d,
    conv2d,
    conv3d,
    conv_transpose,
    transpose_kernel,
)
from convjax.functional.conv_impls import ConvImpl, ConvSpec
from convjax.functional.conv_table import CONV_IMPLS
from convjax.functional.padding import PADDING_MODES, pad

# --- dense, activations, losses, initialisers (dense.py, activations.py, losses.py, init.py) ---
# isort: split
from convjax.functional.activations import (
    elu,
    gelu,
    leaky_relu,
    log_softmax,
    relu,
    sigmoid,
    softmax,
    tanh,
)
from convjax.functional.dense import dense, flatten
from convjax.functional.init import (
    INIT_SCHEMES,
    conv_fans,
    conv_init,
    conv_param_count,
    dense_init,
    dense_param_count,
)
from convjax.functional.losses import REDUCTIONS, multiclass_hinge_loss, softmax_cross_entropy

# --- normalisation and dropout (normalization.py, dropout.py) ---
# isort: split
from convjax.functional.dropout import dropout
from convjax.functional.normalization import batch_moments, batch_norm

# --- pooling (pooling.py) ---
from convjax.functional.pooling import (
    adaptive_avg_pool,
    adaptive_max_pool,
    avg_pool,
    global_avg_pool,
    global_max_pool,
    lp_pool,
    max_pool,
    max_unpool,
    min_pool,
    sum_pool,
)
