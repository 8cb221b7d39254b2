"""Population mechanics: stacking, execution strategies, hyperparameters as arrays.

The reference for every strategy is plain one-member training of each member alone (a jitted
step in a Python loop). The model is a tiny pure-JAX CNN defined here on purpose: it checks
the population machinery independently of convjax.models / convjax.train. test_sharding.py and
test_distributed.py import it (``from test_population import ...``).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from convjax.train import population as pop

# ---------------------------------------------------------------- tiny model


def init_params(key, channels=4, classes=3):
    k1, k2 = jax.random.split(key)
    return {
        "conv": {
            "kernel": jax.random.normal(k1, (3, 3, 1, channels)) * 0.3,
            "bias": jnp.zeros((channels,)),
        },
        "dense": {
            "kernel": jax.random.normal(k2, (channels, classes)) * 0.3,
            "bias": jnp.zeros((classes,)),
        },
    }


def apply(params, x, key=None, dropout_rate=0.0):
    y = jax.lax.conv_general_dilated(
        x, params["conv"]["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    y = jax.nn.relu(y + params["conv"]["bias"]).mean(axis=(1, 2))
    if key is not None:
        keep = 1.0 - dropout_rate
        mask = jax.random.bernoulli(key, keep, y.shape)
        y = jnp.where(mask, y / keep, 0.0)
    return y @ params["dense"]["kernel"] + params["dense"]["bias"]


def make_optimizer():
    # Every numeric optimizer knob is an array in the state (one value per member once stacked).
    return optax.inject_hyperparams(
        lambda learning_rate, momentum, weight_decay: optax.chain(
            optax.add_decayed_weights(weight_decay), optax.sgd(learning_rate, momentum)
        )
    )(learning_rate=0.1, momentum=0.9, weight_decay=0.0)


def member_step(state, batch, key, hparams):
    params, opt_state = state
    x, labels = batch
    opt = make_optimizer()

    def loss_fn(p):
        logits = apply(p, x, key, hparams["dropout_rate"])
        onehot = optax.smooth_labels(jax.nn.one_hot(labels, 3), hparams["label_smoothing"])
        return optax.softmax_cross_entropy(logits, onehot).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), {"loss": loss}


def data(key, n=16, size=6):
    kx, ky = jax.random.split(key)
    x = jax.random.normal(kx, (n, size, size, 1))
    y = jax.random.randint(ky, (n,), 0, 3)
    return x, y


HP = {
    "learning_rate": [0.05, 0.1, 0.2, 0.3],
    "momentum": [0.0, 0.5, 0.9, 0.8],
    "weight_decay": [0.0, 1e-3, 0.0, 1e-2],
    "label_smoothing": [0.0, 0.1, 0.2, 0.0],
    "dropout_rate": [0.0, 0.1, 0.3, 0.5],
}
N = 4
STEPS = 3


def member_init(i):
    params = init_params(jax.random.key(100 + i))
    opt_state = make_optimizer().init(params)
    opt_state = pop.set_hyperparams(
        opt_state, **{k: HP[k][i] for k in ("learning_rate", "momentum", "weight_decay")}
    )
    return params, opt_state


@functools.cache
def solo_reference(per_member):
    """Each member trained alone on make_batches(per_member), computed once per module."""
    batches = make_batches(per_member)
    return [solo_train(i, batches, KEYS) for i in range(N)]


def solo_train(i, batches, keys):
    """Member i trained alone: the reference every strategy must reproduce."""
    state = member_init(i)
    hp = {k: jnp.float32(HP[k][i]) for k in ("label_smoothing", "dropout_rate")}
    step = jax.jit(member_step)
    losses = []
    for t, b in enumerate(batches):
        bi = jax.tree.map(lambda x: x[i], b) if b[0].ndim == 5 else b
        state, m = step(state, bi, keys[t][i], hp)
        losses.append(m["loss"])
    return state, np.array(losses)


def pop_train(strategy, batches, keys, batch_per_member=False):
    states = pop.stack([member_init(i) for i in range(N)])
    hp = {k: jnp.array(HP[k], jnp.float32) for k in ("label_smoothing", "dropout_rate")}
    step = pop.population_step(member_step, strategy=strategy, batch_per_member=batch_per_member)
    losses = []
    for t, b in enumerate(batches):
        states, m = step(states, b, keys[t], hp)
        losses.append(m["loss"])
    return states, np.stack(losses, axis=1), step


def make_batches(per_member):
    out = []
    for t in range(STEPS):
        if per_member:
            xs, ys = zip(*[data(jax.random.key(1000 * t + i)) for i in range(N)])
            out.append((jnp.stack(xs), jnp.stack(ys)))
        else:
            out.append(data(jax.random.key(t)))
    return out


KEYS = [jax.random.split(jax.random.key(7 + t), N) for t in range(STEPS)]


@pytest.mark.parametrize("strategy", ["vmap", "unrolled", "sequential", "auto"])
@pytest.mark.parametrize("per_member", [False, True])
def test_population_equals_members_trained_alone(strategy, per_member):
    batches = make_batches(per_member)
    states, losses, step = pop_train(strategy, batches, KEYS, batch_per_member=per_member)
    assert step.strategy in ("vmap", "unrolled", "sequential")
    assert losses.shape == (N, STEPS)
    for i in range(N):
        ref_state, ref_losses = solo_reference(per_member)[i]
        np.testing.assert_allclose(losses[i], ref_losses, rtol=1e-5, atol=1e-6)
        got = pop.member(states, i)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref_state)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # The hyperparameters really differ per member and really matter: members diverge.
    assert not np.allclose(losses[0, -1], losses[3, -1])


def test_hyperparams_are_per_member_arrays_in_the_optimizer_state():
    states = pop.stack([member_init(i) for i in range(N)])
    hp = pop.get_hyperparams(states[1])
    np.testing.assert_allclose(hp["learning_rate"], HP["learning_rate"])
    np.testing.assert_allclose(hp["momentum"], HP["momentum"])
    states2 = (states[0], pop.set_hyperparams(states[1], learning_rate=jnp.ones(N)))
    np.testing.assert_allclose(pop.get_hyperparams(states2[1])["learning_rate"], np.ones(N))


def test_stack_unstack_round_trip_and_member():
    trees = [{"a": jnp.full((2,), i), "b": (jnp.float32(i),)} for i in range(3)]
    s = pop.stack(trees)
    assert s["a"].shape == (3, 2) and s["b"][0].shape == (3,)
    assert pop.population_size(s) == 3
    back = pop.unstack(s)
    for t, u in zip(trees, back):
        np.testing.assert_array_equal(t["a"], u["a"])
        np.testing.assert_array_equal(t["b"][0], u["b"][0])
    np.testing.assert_array_equal(pop.member(s, -1)["a"], [2, 2])


def test_auto_takes_the_backends_strategy():
    assert pop.resolve_strategy("auto", member_step, backend="cpu") == "unrolled"
    assert pop.resolve_strategy("auto", member_step, backend="gpu") == "vmap"
    # per-member steps cannot be vmapped: auto falls back to unrolled
    assert pop.resolve_strategy("auto", [member_step] * 2, backend="tpu") == "unrolled"
    assert pop.population_step(member_step).strategy == pop.AUTO_STRATEGY[jax.default_backend()]
    with pytest.raises(ValueError, match=r"strategy='sequential' is not traceable"):
        pop.population_fn(member_step, "sequential")


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"strategy='fast' is not one of"):
        pop.population_step(member_step, strategy="fast")
    with pytest.raises(ValueError, match=r"trees=\[\] is empty"):
        pop.stack([])
    with pytest.raises(ValueError, match=r"trees\[1\] has structure"):
        pop.stack([{"a": 1.0}, {"b": 1.0}])
    with pytest.raises(ValueError, match=r"trees\[1\] has a leaf of shape \(3,\)"):
        pop.stack([jnp.zeros(2), jnp.zeros(3)])
    with pytest.raises(ValueError, match=r"leading dimensions"):
        pop.population_size({"a": jnp.zeros((2, 1)), "b": jnp.zeros((3,))})
    with pytest.raises(ValueError, match=r"no array leaves"):
        pop.population_size({})
    with pytest.raises(ValueError, match=r"index=5 is out of range for a population of 2"):
        pop.member(jnp.zeros((2, 3)), 5)
    with pytest.raises(ValueError, match=r"\['beta'\] not found"):
        pop.set_hyperparams(member_init(0)[1], beta=0.1)
    states = pop.stack([member_init(i) for i in range(N)])
    hp = {k: jnp.array(HP[k]) for k in ("label_smoothing", "dropout_rate")}
    step = pop.population_step(member_step, strategy="unrolled")
    b = data(jax.random.key(0))
    with pytest.raises(ValueError, match=r"keys has 2 entries for a population of 4"):
        step(states, b, KEYS[0][:2], hp)
    with pytest.raises(ValueError, match=r"hparams\['dropout_rate'\] has shape \(3,\)"):
        step(states, b, KEYS[0], {**hp, "dropout_rate": jnp.zeros(3)})
    step_pm = pop.population_step(member_step, strategy="unrolled", batch_per_member=True)
    with pytest.raises(ValueError, match=r"batch_per_member=True every batch leaf"):
        step_pm(states, b, KEYS[0], hp)


def test_per_member_steps_for_closure_constants():
    """Members whose step must close over a Python constant: one step per member."""

    def scaled(c):
        def step(state, batch, key, hp):
            (p, o), m = member_step(state, (batch[0] * c, batch[1]), key, hp)
            return (p, o), m

        return step

    batches = make_batches(False)
    hp = {k: jnp.array(HP[k], jnp.float32) for k in ("label_smoothing", "dropout_rate")}
    consts = [1.0, 2.0, 0.5, 1.0]
    states0 = pop.stack([member_init(i) for i in range(N)])
    got = {}
    for strategy in ("unrolled", "sequential", "auto"):
        step = pop.population_step([scaled(c) for c in consts], strategy=strategy)
        states, m = step(states0, batches[0], KEYS[0], hp)
        got[strategy] = np.asarray(m["loss"])
        assert step.strategy in pop.PER_MEMBER_STRATEGIES
    for i, c in enumerate(consts):
        hp_i = {k: v[i] for k, v in hp.items()}
        _, m = jax.jit(scaled(c))(member_init(i), batches[0], KEYS[0][i], hp_i)
        for strategy in got:
            np.testing.assert_allclose(got[strategy][i], m["loss"], rtol=1e-5)
    with pytest.raises(ValueError, match=r"strategy='vmap' runs one traced function"):
        pop.population_step([scaled(c) for c in consts], strategy="vmap")
    with pytest.raises(ValueError, match=r"2 member steps were given for a population of 4"):
        pop.population_step([scaled(1.0)] * 2, strategy="unrolled")(
            states0, batches[0], KEYS[0], hp
        )
