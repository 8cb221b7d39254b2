"""A trained model back from its workdir: :func:`load_model`.

Reads the run's ``config.json`` and its newest intact checkpoint (verified as on resume,
``convjax.train.checkpoint``) and returns the network with the checkpoint's weights -- the EMA
weights when the run kept them -- in evaluation mode, ready for ``convjax.inspect``.
"""

from __future__ import annotations

from pathlib import Path

from flax import nnx

from convjax import data as cdata
from convjax.train import optim, report
from convjax.train import population as pop
from convjax.train.checkpoint import Checkpointer
from convjax.train.config import prepare
from convjax.train.factory import make_model
from convjax.train.state import create_train_state, merge_model

__all__ = ["load_model"]


def load_model(workdir, *, config=None, member: int = 0) -> nnx.Module:
    """The trained network of a run (or of one member of a population).

    Args:
      workdir: the folder ``train_and_evaluate`` (or ``fit``) trained in.
      config: the member's run config; default: ``workdir/config.json`` (a single run).
      member: the member's index in the population (0 for a single run).

    Returns:
      The model with the newest checkpoint's weights, in evaluation mode.

    Raises:
      FileNotFoundError: ``workdir`` has no checkpoint or no ``config.json``.
      ValueError: the member is not in the checkpoint (it left the population earlier).
    """
    workdir = Path(workdir)
    if config is None:
        path = workdir / "config.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; pass config= for a population member.")
        config = report.read_json(path)
    cfg = prepare(config)
    shape = cdata.dataset_shape(cfg.dataset)
    if shape is None:
        ds = cdata.load_dataset(cfg.dataset)
        shape = (ds.image_shape, ds.num_classes)
    model = make_model(cfg, *shape)

    def template(loop):
        tx = optim.make_optimizer(cfg, 1, member_rates=len(loop.members) > 1)
        _, state = create_train_state(model, tx, ema=cfg.ema_decay > 0)
        return pop.stack([state] * len(loop.live))

    ck = Checkpointer(workdir)
    try:
        restored = ck.restore(template)
    finally:
        ck.close()
    if restored is None:
        raise FileNotFoundError(f"no checkpoint in {workdir / 'checkpoints'}; train there first.")
    states, loop = restored
    if member not in loop.live:
        raise ValueError(
            f"member={member} is not in the newest checkpoint of {workdir} (it holds members "
            f"{loop.live}); a member that stopped early keeps no final weights."
        )
    state = pop.member(states, loop.live.index(member))
    model_def, _ = create_train_state(model, optim.make_optimizer(cfg, 1))
    params = state.params if state.ema_params is None else state.ema_params
    trained = merge_model(model_def, params, state.batch_stats)
    trained.eval()
    return trained
