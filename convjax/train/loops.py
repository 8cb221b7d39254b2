"""Loop forms: how k consecutive train steps are handed to XLA, chosen by measurement.

The dataset lives on the device; each member's epoch order is an int32
``(num_batches, batch_size)`` index array (``convjax.data.epoch_permutation``), stacked over
the N members of a population (N = 1 for a single run). :func:`make_multi_step` builds one
jitted function that runs ``k`` population steps starting at batch ``start``, gathering each
member's batch from the device arrays inside the jit and deriving its key as
``fold_in(epoch_key, batch)``::

    multi(states, images, labels, orders, start, epoch_keys, hparams)
        -> (states, {"loss": (k, N), "correct": (k, N), "ok": (k, N)})

Forms (``form=``):

- ``"step"``: k = 1; one jitted call per step (the Python loop dispatches them).
- ``"scan"``: the k steps in a rolled ``lax.scan``.
- ``"unrolled"``: the k steps written out one after another in one jit (``lax.scan`` with
  ``unroll=k``), so XLA sees and schedules them as one straight-line program.

Measured with ``benchmarks/bench_loops.py`` (results in ``benchmarks/results/loops.md``): on
the shared 2-core CPU with jax 0.10.2, default network, batch 128, k = 4, the rolled scan ran
at 0.05x the speed of separate calls (2.1 vs 46 images/s, and 337 s to compile) while the
unrolled form ran at 2.25x (105 images/s; load average 9-14 during the run, so the absolute
numbers are low; the idle-machine figures were 0.04x and 1.24x). :data:`BEST_FORM`
therefore picks the unrolled form on CPU.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

FORMS = ("step", "scan", "unrolled")

#: Fastest loop form and k per backend, from ``benchmarks/results/loops.md``. GPU/TPU entries
#: are the usual choice there (a rolled scan keeps the host out of the loop); measure with the
#: benchmark before relying on them.
BEST_FORM = {
    "cpu": ("unrolled", 4),
    "gpu": ("scan", 16),
    "tpu": ("scan", 16),
}


def best_form(backend: str | None = None) -> tuple[str, int]:
    """``(form, k)`` for ``backend`` (default: ``jax.default_backend()``)."""
    backend = backend or jax.default_backend()
    return BEST_FORM.get(backend, ("step", 1))


def check_form(form: str, k: int) -> None:
    """Raise ``ValueError`` for an unknown loop form or a k < 1."""
    if form not in FORMS:
        raise ValueError(
            f"loop form {form!r} is not one of {', '.join(map(repr, FORMS))} (or 'auto'); "
            f"see convjax.train.loops."
        )
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"steps_per_call={k!r} must be an int >= 1.")


def steps_per_call(k_best: int, members: int) -> int:
    """Steps per call for a population of ``members``: about ``k_best`` member steps per program.

    A k-step unrolled call of N unrolled members holds k x N copies of the step; compile time
    grows with that count while the gain of unrolling comes from the first few copies (the N
    members already give XLA independent work), so k shrinks as N grows (at least 1).
    """
    return max(1, k_best // max(1, members))


def make_multi_step(
    population_step,
    form: str,
    k: int,
    *,
    per_member_images: bool = False,
    single: bool = False,
    constrain=None,
    donate: bool = True,
):
    """Jit ``k`` consecutive population steps that gather their own batches (module docstring).

    Args:
      population_step: traceable ``(states, batch, keys, hparams) -> (states, metrics)`` for N
        members with batch leaves ``(N, B, ...)`` (``convjax.train.population.population_fn``);
        with ``single=True``, one member's step on unstacked arguments.
      form: ``"step"`` (requires k = 1), ``"scan"`` or ``"unrolled"``.
      k: steps per call.
      per_member_images: ``images``/``labels`` carry a member axis (each member its own
        training split) instead of one shared copy.
      single: one member without a member axis anywhere (``orders`` ``(batches, B)``, one
        epoch key, unstacked state and hyperparameters): the program of a plain single run.
        Metrics still come back ``(k, 1)``. (Adding a member axis of size 1, even by reshapes,
        changes how XLA fuses the batch-norm reductions and so their last bits.)
      constrain: optional ``batch -> batch`` applied inside the jit (a sharding constraint).
      donate: donate the state's buffers to the call (no copy of the parameters per call).

    Returns:
      ``multi(states, images, labels, orders, start, epoch_keys, hparams)`` returning
      ``(states, metrics)`` with metric leaves ``(k, N)``; ``orders`` is ``(N, batches, B)``
      int32 and ``epoch_keys`` ``(N,)`` keys.
    """
    check_form(form, k)
    if form == "step" and k != 1:
        raise ValueError(f"loop form 'step' runs one step per call; got steps_per_call={k}.")
    take = jax.vmap(lambda x, i: jnp.take(x, i, axis=0))

    def one(states, images, labels, orders, b, epoch_keys, hparams):
        if single:
            idx = orders[b]
            batch = {"image": jnp.take(images, idx, axis=0), "label": jnp.take(labels, idx, axis=0)}
            keys = jax.random.fold_in(epoch_keys, b)
        else:
            idx = orders[:, b]  # (N, B)
            if per_member_images:
                batch = {"image": take(images, idx), "label": take(labels, idx)}
            else:
                batch = {
                    "image": jnp.take(images, idx, axis=0),
                    "label": jnp.take(labels, idx, axis=0),
                }
            keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(epoch_keys, b)
        if constrain is not None:
            batch = constrain(batch)
        return population_step(states, batch, keys, hparams)

    def multi(states, images, labels, orders, start, epoch_keys, hparams):
        def body(st, i):
            return one(st, images, labels, orders, start + i, epoch_keys, hparams)

        if form == "step":
            st, m = one(states, images, labels, orders, start, epoch_keys, hparams)
            m = jax.tree.map(lambda v: v[None], m)
        else:
            unroll = k if form == "unrolled" else 1
            st, m = jax.lax.scan(body, states, jnp.arange(k, dtype=jnp.int32), unroll=unroll)
        if single:
            m = jax.tree.map(lambda v: v[:, None], m)
        return st, m

    return jax.jit(multi, donate_argnums=(0,) if donate else ())


def next_chunk(b: int, num_batches: int, k: int, breaks=()) -> int:
    """Steps in the chunk that starts at batch ``b``: up to the next multiple of ``k`` (counted
    from batch 0 of the epoch), the end of the epoch, or the next batch in ``breaks``, whichever
    comes first. Chunks so aligned group a resumed run's steps exactly as an uninterrupted
    run's (same compiled programs, same floating-point results); ``breaks`` are the batches after
    which a population schedule acts (``convjax.train.schedules``)."""
    end = min(b + k - (b % k), num_batches, *(e for e in breaks if e > b))
    return end - b


class StepCache:
    """Compiled multi-steps keyed by k, so an epoch's short tail chunk compiles once.

    ``options`` are :func:`make_multi_step`'s keyword arguments.
    """

    def __init__(self, population_step, form: str, k: int, **options):
        check_form(form, k)
        self.form, self.k = form, k
        self._step = population_step
        self._options = options

    @functools.cache  # noqa: B019 -- one cache per StepCache object is the intent
    def get(self, n: int):
        form = "step" if n == 1 else self.form
        return make_multi_step(self._step, form, n, **self._options)
