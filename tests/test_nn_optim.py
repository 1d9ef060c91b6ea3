"""Optimizers match the course's update rules, computed by hand for three steps."""
import numpy as np
import pytest

import funcgrad
from funcgrad_nn import optim, schedules

GRADS = [np.array([0.5, -1.0]), np.array([0.1, 2.0]), np.array([-0.3, 0.4])]
X0 = np.array([1.0, -2.0])


def run(opt, x=X0, grads=GRADS):
    state = opt.init(x)
    xs = []
    for g in grads:
        updates, state = opt.update(g, state, x)
        x = optim.apply_updates(x, updates)
        xs.append(np.asarray(x))
    return xs


def test_sgd():
    lr = 0.1
    x, expect = X0.copy(), []
    for g in GRADS:
        x = x - lr * g
        expect.append(x.copy())
    np.testing.assert_allclose(run(optim.sgd(lr)), expect)


def test_momentum_course_rule():
    lr, mu = 0.1, 0.9
    x, v, expect = X0.copy(), np.zeros(2), []
    for dx in GRADS:
        v = mu * v - lr * dx
        x = x + v
        expect.append(x.copy())
    np.testing.assert_allclose(run(optim.momentum(lr, mu)), expect)


def test_nesterov_course_rule():
    lr, mu = 0.1, 0.9
    x, v, expect = X0.copy(), np.zeros(2), []
    for dx in GRADS:
        v_prev = v
        v = mu * v - lr * dx
        x = x + (-mu * v_prev + (1 + mu) * v)
        expect.append(x.copy())
    np.testing.assert_allclose(run(optim.nesterov(lr, mu)), expect)


def test_adagrad_course_rule():
    lr, eps = 0.1, 1e-7
    x, cache, expect = X0.copy(), np.zeros(2), []
    for dx in GRADS:
        cache = cache + dx ** 2
        x = x - lr * dx / (np.sqrt(cache) + eps)
        expect.append(x.copy())
    np.testing.assert_allclose(run(optim.adagrad(lr)), expect)


def test_rmsprop_course_rule():
    lr, decay, eps = 0.01, 0.99, 1e-8
    x, cache, expect = X0.copy(), np.zeros(2), []
    for dx in GRADS:
        cache = decay * cache + (1 - decay) * dx ** 2
        x = x - lr * dx / (np.sqrt(cache) + eps)
        expect.append(x.copy())
    np.testing.assert_allclose(run(optim.rmsprop(lr, decay)), expect)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_with_bias_correction(weight_decay):
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    x, m, v, expect = X0.copy(), np.zeros(2), np.zeros(2), []
    for t, dx in enumerate(GRADS, 1):
        m = b1 * m + (1 - b1) * dx
        v = b2 * v + (1 - b2) * dx ** 2
        step = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        x = x - lr * (step + weight_decay * x)
        expect.append(x.copy())
    opt = optim.adamw(lr, weight_decay=weight_decay) if weight_decay else optim.adam(lr)
    np.testing.assert_allclose(run(opt), expect, rtol=1e-12)


def test_schedule_as_learning_rate_and_chain():
    sched = schedules.step_decay(0.1, gamma=0.5, step_size=2)
    x, expect = X0.copy(), []
    for i, g in enumerate(GRADS):
        x = x - 0.1 * 0.5 ** (i // 2) * np.clip(g, -1, 1)
        expect.append(x.copy())
    opt = optim.chain(optim.clip(1.0), optim.sgd(sched))
    np.testing.assert_allclose(run(opt), expect)


def test_clip_by_global_norm():
    g = {"a": np.array([3.0]), "b": np.array([4.0])}
    updates, _ = optim.clip_by_global_norm(1.0).update(g, optim.EmptyState())
    np.testing.assert_allclose([updates["a"][0], updates["b"][0]], [0.6, 0.8])
    small, _ = optim.clip_by_global_norm(10.0).update(g, optim.EmptyState())
    np.testing.assert_allclose(small["a"], g["a"])


def test_optimizers_on_pytrees_under_jit_keep_dtypes():
    params = {"w": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)}
    grads = {"w": np.full((2, 3), 0.5, np.float32), "b": np.ones(3, np.float32)}
    for name, make in optim.OPTIMIZERS.items():
        opt = make(0.01)
        state = opt.init(params)

        def step(p, s, g):
            u, s = opt.update(g, s, p)
            return optim.apply_updates(p, u), s

        eager_p, _ = step(params, state, grads)
        if hasattr(funcgrad, "jit"):
            jit_p, _ = funcgrad.jit(step)(params, state, grads)
            for k in params:
                np.testing.assert_allclose(jit_p[k], eager_p[k], rtol=1e-6, err_msg=name)
        for k in params:
            assert np.asarray(eager_p[k]).dtype == np.float32, name


def test_polyak_and_ema_averaging():
    iterates = [np.array([1.0]), np.array([3.0]), np.array([5.0])]
    avg = optim.polyak_averaging()
    s = avg.init(np.array([0.0]))
    for p in iterates:
        s = avg.update(p, s)
    np.testing.assert_allclose(s.average, [3.0])
    e = optim.ema(0.5)
    s = e.init(np.array([0.0]))
    for p in iterates:
        s = e.update(p, s)
    np.testing.assert_allclose(s.average, [((0 * .5 + .5) * .5 + 1.5) * .5 + 2.5])


def test_add_decayed_weights_needs_params():
    with pytest.raises(ValueError, match="needs params"):
        optim.add_decayed_weights(0.1).update(np.ones(2), optim.EmptyState())


def test_schedules():
    assert schedules.constant(0.3)(100) == 0.3
    s = schedules.step_decay(1.0, 0.1, 10)
    np.testing.assert_allclose([s(0), s(9), s(10), s(25)], [1, 1, 0.1, 0.01])
    e = schedules.exponential_decay(1.0, 0.5, 2, staircase=True)
    np.testing.assert_allclose([e(0), e(1), e(2), e(5)], [1, 1, 0.5, 0.25])
    inv = schedules.inverse_time_decay(1.0, 0.5)
    np.testing.assert_allclose(inv(2), 0.5)
    c = schedules.cosine_decay(1.0, 10, alpha=0.1)
    np.testing.assert_allclose([c(0), c(10), c(20)], [1.0, 0.1, 0.1])
    w = schedules.linear_warmup(schedules.constant(1.0), 4)
    np.testing.assert_allclose([w(0), w(2), w(4), w(10)], [0, 0.5, 1, 1])
    p = schedules.piecewise_constant(1.0, {5: 0.1, 10: 0.5})
    np.testing.assert_allclose([p(0), p(5), p(10)], [1.0, 0.1, 0.05])


def test_reduce_on_plateau():
    r = schedules.ReduceLROnPlateau(factor=0.5, patience=1)
    assert [r.update(v) for v in [1.0, 0.9, 0.95, 0.95, 0.95]] == [1.0, 1.0, 1.0, 0.5, 0.5]


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "rmsprop"])
def test_donated_optimizer_step_updates_in_place(name):
    """With the params and optimizer state donated, the jitted step writes the new values
    into the old buffers (the returned arrays are the donated ones)."""
    opt = optim.OPTIMIZERS[name](0.1)
    params = {"w": np.ones((4, 3), np.float32), "b": np.ones(3, np.float32)}
    grads = {"w": np.full((4, 3), 0.5, np.float32), "b": np.ones(3, np.float32)}

    def step(p, s, g):
        u, s = opt.update(g, s, p)
        return optim.apply_updates(p, u), s

    state = opt.init(params)
    reference = step(params, state, grads)
    before = {id(a) for a in funcgrad.tree_util.tree_leaves((params, state)) if np.ndim(a)}
    new_params, new_state = funcgrad.jit(step, donate_argnums=(0, 1))(params, state, grads)
    after = [a for a in funcgrad.tree_util.tree_leaves((new_params, new_state)) if np.ndim(a)]
    assert all(id(a) in before for a in after)
    for a, b in zip(funcgrad.tree_util.tree_leaves(reference), funcgrad.tree_util.tree_leaves(new_params)):
        np.testing.assert_allclose(b, a, rtol=1e-6)


def test_schedules_inside_jit_follow_the_step_count():
    """Schedules run on the traced step counter of the optimizer state."""
    sched = schedules.linear_warmup(schedules.cosine_decay(1.0, 10), 2)
    opt = optim.sgd(sched)
    x, state = np.zeros(1), opt.init(np.zeros(1))
    step = funcgrad.jit(lambda x, s: opt.update(np.ones(1), s, x))
    for t in range(12):
        updates, state = step(x, state)
        np.testing.assert_allclose(-updates, [float(sched(t))], rtol=1e-12, atol=1e-15)
    assert int(state[0].count) == 12


@pytest.mark.parametrize("opt,other,match", [
    (optim.momentum(0.1), optim.adam(0.1), r"momentum.update: expected the VelocityState .* got tuple"),
    (optim.rmsprop(0.1), optim.momentum(0.1), r"rmsprop.update: expected the CacheState .* got VelocityState"),
    (optim.adam(0.1), optim.momentum(0.1), r"chain.update: expected the tuple of 2 states .* got VelocityState"),
    (optim.scale_by_adam(), optim.adagrad(0.1), r"scale_by_adam.update: expected the ScaleByAdamState"),
])
def test_another_optimizers_state_is_a_clear_type_error(opt, other, match):
    params = {"w": np.ones(3)}
    with pytest.raises(TypeError, match=match):
        opt.update(params, other.init(params), params)
