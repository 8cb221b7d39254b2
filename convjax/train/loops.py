"""Loop forms: how k consecutive train steps are handed to XLA, chosen by measurement.

The dataset lives on the device; an epoch's order is an int32 ``(num_batches, batch_size)``
index array (``convjax.data.epoch_permutation``). :func:`make_multi_step` builds one jitted
function that runs ``k`` steps starting at batch ``start``, gathering each batch from the
device arrays inside the jit and deriving each step's key as ``fold_in(epoch_key, batch)``::

    multi(state, images, labels, order, start, epoch_key, hparams)
        -> (state, {"loss": (k,), "correct": (k,)})

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


def make_multi_step(train_step, form: str, k: int, *, donate: bool = True):
    """Jit ``k`` consecutive applications of a member ``train_step`` (module docstring).

    Args:
      train_step: ``(state, batch, key, hparams) -> (state, metrics)`` (``steps.make_train_step``).
      form: ``"step"`` (requires k = 1), ``"scan"`` or ``"unrolled"``.
      k: steps per call.
      donate: donate the state's buffers to the call (no copy of the parameters per call).

    Returns:
      ``multi(state, images, labels, order, start, epoch_key, hparams)`` returning
      ``(state, metrics)`` with metrics stacked over the k steps.
    """
    check_form(form, k)
    if form == "step" and k != 1:
        raise ValueError(f"loop form 'step' runs one step per call; got steps_per_call={k}.")

    def one(state, images, labels, order, b, epoch_key, hparams):
        idx = order[b]
        batch = {"image": jnp.take(images, idx, axis=0), "label": jnp.take(labels, idx, axis=0)}
        return train_step(state, batch, jax.random.fold_in(epoch_key, b), hparams)

    def multi(state, images, labels, order, start, epoch_key, hparams):
        def body(st, i):
            return one(st, images, labels, order, start + i, epoch_key, hparams)

        if form == "step":
            st, m = one(state, images, labels, order, start, epoch_key, hparams)
            return st, jax.tree.map(lambda v: v[None], m)
        unroll = k if form == "unrolled" else 1
        return jax.lax.scan(body, state, jnp.arange(k, dtype=jnp.int32), unroll=unroll)

    return jax.jit(multi, donate_argnums=(0,) if donate else ())


def chunks(start: int, num_batches: int, k: int) -> list[tuple[int, int]]:
    """``[(first_batch, n_steps), ...]`` covering batches ``start .. num_batches - 1``.

    Chunks are aligned to multiples of ``k`` from the start of the epoch (batch 0), so a run
    resumed at a chunk boundary groups its steps exactly as an uninterrupted run does (same
    compiled programs, same floating-point results). The tail of an epoch that k does not
    divide is one shorter chunk.
    """
    out = []
    b = start
    while b < num_batches:
        n = min(k - (b % k), num_batches - b)
        out.append((b, n))
        b += n
    return out


class StepCache:
    """Compiled multi-steps keyed by k, so an epoch's short tail chunk compiles once."""

    def __init__(self, train_step, form: str, k: int):
        check_form(form, k)
        self.form, self.k = form, k
        self._train_step = train_step

    @functools.cache  # noqa: B019 -- one cache per StepCache object is the intent
    def get(self, n: int):
        form = "step" if n == 1 else self.form
        return make_multi_step(self._train_step, form, n)
