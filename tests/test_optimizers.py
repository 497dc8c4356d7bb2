"""SGD and Adam against element-by-element references; constraints after each update."""

import numpy as np
import pytest

from numba_dwconv import DepthwiseConv1D, constraints, optimizers
from numba_dwconv import reference as ref


class Holder:
    """The three attributes an optimizer reads, without a layer."""

    def __init__(self, weights, constraint_list=None):
        self.trainable_weights = weights
        self.trainable_constraints = constraint_list or [None] * len(weights)
        self.gradients = None
        self.name = "holder"


RNG = np.random.default_rng(0)
W0 = [RNG.standard_normal((3, 4, 2)), RNG.standard_normal(8)]
GRADS = [[RNG.standard_normal(w.shape) for w in W0] for _ in range(4)]


def run(optimizer, dtype=np.float64):
    holder = Holder([w.astype(dtype) for w in W0])
    arrays = list(holder.trainable_weights)
    for grads in GRADS:
        holder.gradients = grads
        optimizer.step(holder)
    assert all(a is b for a, b in zip(arrays, holder.trainable_weights))  # updated in place
    assert optimizer.iterations == len(GRADS)
    return holder.trainable_weights


@pytest.mark.parametrize(("momentum", "nesterov"), [(0.0, False), (0.9, False), (0.9, True), (0.5, True)])
def test_sgd(momentum, nesterov):
    got = run(optimizers.SGD(0.05, momentum, nesterov))
    for index, w in enumerate(got):
        want = ref.sgd_steps(W0[index], [g[index] for g in GRADS], 0.05, momentum, nesterov)
        np.testing.assert_allclose(w, want, rtol=1e-13)


@pytest.mark.parametrize("kwargs", [{}, {"learning_rate": 0.01, "beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-3}])
def test_adam(kwargs):
    got = run(optimizers.Adam(**kwargs))
    full = {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, **kwargs}
    for index, w in enumerate(got):
        want = ref.adam_steps(W0[index], [g[index] for g in GRADS], **full)
        np.testing.assert_allclose(w, want, rtol=1e-12)


def test_float32_weights_stay_float32():
    got = run(optimizers.Adam(0.01), np.float32)
    assert all(w.dtype == np.float32 for w in got)
    want = ref.adam_steps(W0[0], [g[0] for g in GRADS], 0.01)
    np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-6)


def test_constraint_applied_after_the_update():
    holder = Holder([W0[0].copy(), W0[1].copy()], [constraints.MaxNorm(0.5), constraints.NonNeg()])
    holder.gradients = GRADS[0]
    optimizers.SGD(0.1).step(holder)
    updated = [W0[i] - 0.1 * GRADS[0][i] for i in range(2)]
    n = ref.norms_along(updated[0], 0)
    np.testing.assert_allclose(holder.trainable_weights[0], updated[0] * np.minimum(n, 0.5) / (1e-7 + n),
                               rtol=1e-13)
    np.testing.assert_array_equal(holder.trainable_weights[1], np.maximum(updated[1], 0))


def test_step_on_a_layer_uses_its_constraints():
    layer = DepthwiseConv1D(3, depthwise_constraint="non_neg", dtype="float64")
    x = RNG.standard_normal((2, 8, 3))
    y = layer(x)
    layer.backward(np.ones_like(y))
    kernel_before = layer.kernel.copy()
    grads = [g.copy() for g in layer.gradients]
    optimizers.SGD(0.1).step(layer)
    np.testing.assert_allclose(layer.kernel, np.maximum(kernel_before - 0.1 * grads[0], 0), rtol=1e-14)


def test_step_errors():
    holder = Holder([W0[0].copy()])
    with pytest.raises(ValueError, match="backward"):
        optimizers.SGD().step(holder)
    holder.gradients = [np.zeros(3)]
    with pytest.raises(ValueError, match="shape"):
        optimizers.SGD().step(holder)
    holder.gradients = []
    with pytest.raises(ValueError, match="1 trainable weights but 0 gradients"):
        optimizers.SGD().step(holder)


@pytest.mark.parametrize(("factory", "fragment"), [
    (lambda: optimizers.SGD(momentum=1.5), "momentum=1.5"),
    (lambda: optimizers.SGD(momentum=-0.1), "momentum=-0.1"),
    (lambda: optimizers.SGD(learning_rate=0), "learning_rate=0"),
    (lambda: optimizers.SGD(nesterov="yes"), "nesterov='yes'"),
    (lambda: optimizers.Adam(beta_1=1.0), "beta_1=1.0"),
    (lambda: optimizers.Adam(epsilon=-1e-7), "epsilon=-1e-07"),
    (lambda: optimizers.Adam(learning_rate="fast"), "learning_rate='fast'"),
])
def test_bad_optimizer_arguments(factory, fragment):
    with pytest.raises(ValueError) as info:
        factory()
    assert fragment in str(info.value)
