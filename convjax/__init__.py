"""convjax: a JAX toolkit for convolutional-network research.

Layers of the code (imports only point up the list): ``convjax.functional`` (pure ops),
``convjax.testing`` (gradcheck), ``convjax.nn`` (Flax NNX modules), ``convjax.models``,
``convjax.inspect``, ``convjax.data``, ``convjax.train``. Beside them: ``convjax.xla_env``
(XLA flags, set before JAX starts) and ``convjax.tuning`` (measures conv implementations and
returns a choice for ``impl``).
"""

__version__ = "0.1.0"
