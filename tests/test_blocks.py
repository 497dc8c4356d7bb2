"""Activations, initializers, regularizers and constraints against numba_dwconv.reference and hand formulas."""

import math

import numpy as np
import pytest

from numba_dwconv import activations, constraints, initializers, regularizers
from numba_dwconv import reference as ref

# ---------------------------------------------------------------------------- activations
POINTS = np.array([-7.5, -3.2, -2.9, -1.0, -0.3, 0.25, 0.9, 2.5, 2.95, 3.1, 5.9, 6.2, 11.0])


@pytest.mark.parametrize("name", sorted(ref.ACTIVATIONS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_values(name, dtype):
    x = POINTS.astype(dtype)
    got = activations.get(name)(x)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, ref.activation(name, x), rtol=1e-6 if dtype == np.float32 else 1e-13,
                               atol=1e-7 if dtype == np.float32 else 1e-15)


@pytest.mark.parametrize("name", sorted(ref.ACTIVATIONS))
def test_activation_derivative_by_finite_differences(name):
    eps = 1e-6
    x = POINTS
    numeric = (ref.activation(name, x + eps) - ref.activation(name, x - eps)) / (2 * eps)
    got = activations.get(name).derivative(x)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-8)
    assert activations.get(name).derivative(x.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize(("name", "value", "slope"), [("relu", 0.0, 0.0), ("relu6", 6.0, 0.0),
                                                      ("leaky_relu", 0.0, 0.2), ("hard_sigmoid", 3.0, 0.0)])
def test_derivative_at_kinks_is_the_excluded_branch(name, value, slope):
    assert activations.get(name).derivative(np.array([value]))[0] == slope


def test_activations_are_stable_for_large_inputs():
    x = np.array([-1000.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for name in ("sigmoid", "softplus", "silu", "mish", "elu", "selu", "tanh", "softsign"):
            assert np.all(np.isfinite(activations.get(name)(x))), name
            assert np.all(np.isfinite(activations.get(name).derivative(x))), name


def test_activation_identifiers():
    assert activations.get(None) is activations.linear
    assert activations.get("swish") is activations.silu
    assert activations.get("hard_swish") is activations.hard_silu
    assert activations.serialize(activations.get("gelu")) == "gelu"
    assert activations.serialize(None) == "linear"
    assert activations.get({"class_name": "function", "config": "tanh"}) is activations.tanh
    with pytest.raises(ValueError, match="Could not interpret activation function identifier: 'foo'"):
        activations.get("foo")
    with pytest.raises(ValueError, match="Could not interpret activation function identifier: 3"):
        activations.get(3)


def test_plain_callable_activation():
    def cube(x):
        return x**3

    assert activations.get(cube) is cube
    assert activations.serialize(cube) == "cube"
    with pytest.raises(TypeError, match="no derivative"):
        activations.derivative_of(cube)
    cube.derivative = lambda x: 3 * x**2
    np.testing.assert_array_equal(activations.derivative_of(cube)(np.array([2.0])), [12.0])


def test_activation_does_not_modify_its_input():
    x = POINTS.copy()
    for name in ref.ACTIVATIONS:
        activations.get(name)(x)
        activations.get(name).derivative(x)
    np.testing.assert_array_equal(x, POINTS)


# ---------------------------------------------------------------------------- initializers
@pytest.mark.parametrize(("shape", "fans"), [((), (1, 1)), ((7,), (7, 7)), ((3, 5), (3, 5)),
                                             ((4, 6, 2), (24, 8)), ((1, 32, 10), (32, 10)),
                                             ((3, 3, 8, 2), (72, 18))])
def test_fans(shape, fans):
    assert initializers.compute_fans(shape) == fans


SHAPE = (5, 200, 60)  # fan_in = 1000, fan_out = 300
FAN_IN, FAN_OUT = 1000, 300


@pytest.mark.parametrize(("name", "limit"), [
    ("glorot_uniform", math.sqrt(6 / (FAN_IN + FAN_OUT))),
    ("he_uniform", math.sqrt(6 / FAN_IN)),
    ("lecun_uniform", math.sqrt(3 / FAN_IN)),
])
def test_uniform_variance_scaling_bounds_and_std(name, limit):
    w = initializers.get(name)(SHAPE)
    assert w.dtype == np.float32 and w.shape == SHAPE
    assert np.all(np.abs(w) <= limit)
    assert np.max(np.abs(w)) > 0.99 * limit
    assert abs(np.std(w) - limit / math.sqrt(3)) < 0.01 * limit
    assert abs(np.mean(w)) < 0.01 * limit


@pytest.mark.parametrize(("name", "std"), [
    ("glorot_normal", math.sqrt(2 / (FAN_IN + FAN_OUT))),
    ("he_normal", math.sqrt(2 / FAN_IN)),
    ("lecun_normal", math.sqrt(1 / FAN_IN)),
])
def test_truncated_normal_variance_scaling(name, std):
    w = initializers.get(name)(SHAPE, "float64")
    assert w.dtype == np.float64
    assert abs(np.std(w) - std) < 0.01 * std  # the 0.8796 correction keeps the variance
    assert np.all(np.abs(w) <= 2 * std / 0.87962566103423978 + 1e-12)  # cut at two (pre-correction) std


def test_variance_scaling_modes_and_distributions():
    w = initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="untruncated_normal", seed=3)(SHAPE)
    assert abs(np.std(w) - math.sqrt(2.0 / FAN_OUT)) < 0.01 * math.sqrt(2.0 / FAN_OUT)
    assert np.max(np.abs(w)) > 3 * math.sqrt(2.0 / FAN_OUT)  # not truncated
    w = initializers.VarianceScaling(scale=0.5, mode="fan_avg", distribution="uniform", seed=3)(SHAPE)
    limit = math.sqrt(3 * 0.5 / ((FAN_IN + FAN_OUT) / 2))
    assert np.all(np.abs(w) <= limit) and np.max(np.abs(w)) > 0.99 * limit


def test_random_and_constant_initializers():
    w = initializers.RandomUniform(-0.2, 0.3, seed=1)((400, 500))
    assert w.min() >= -0.2 and w.max() < 0.3 and abs(w.mean() - 0.05) < 0.003
    w = initializers.RandomNormal(1.0, 0.5, seed=1)((400, 500))
    assert abs(w.mean() - 1.0) < 0.005 and abs(w.std() - 0.5) < 0.005
    w = initializers.TruncatedNormal(0.0, 0.5, seed=1)((400, 500))
    assert np.all(np.abs(w) <= 1.0) and abs(w.std() - 0.5 * 0.87962566103423978) < 0.005
    np.testing.assert_array_equal(initializers.get("zeros")((2, 3)), np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(initializers.get("ones")((2,)), np.ones(2, np.float32))
    np.testing.assert_array_equal(initializers.Constant(2.5)((2, 2), "float64"), np.full((2, 2), 2.5))


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (3, 2, 5)])
def test_orthogonal(shape):
    w = initializers.Orthogonal(gain=2.0, seed=0)(shape, "float64")
    flat = w.reshape(-1, shape[-1])
    small = flat.T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.T
    np.testing.assert_allclose(small, 4.0 * np.eye(small.shape[0]), atol=1e-12)
    with pytest.raises(ValueError, match="rank >= 2"):
        initializers.Orthogonal()((5,))


@pytest.mark.parametrize("name", ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
                                  "lecun_normal", "random_uniform", "random_normal", "truncated_normal",
                                  "orthogonal", "variance_scaling"])
def test_seeded_draws_repeat_and_unseeded_do_not(name):
    cls = type(initializers.get(name))
    a = cls(seed=42)((4, 8, 3))
    b = cls(seed=42)((4, 8, 3))
    np.testing.assert_array_equal(a, b)
    seeded = cls(seed=42)
    np.testing.assert_array_equal(seeded((4, 8, 3)), seeded((4, 8, 3)))  # Keras 3: same values every call
    assert not np.array_equal(cls(seed=43)((4, 8, 3)), a)
    unseeded = cls()
    assert not np.array_equal(unseeded((4, 8, 3)), unseeded((4, 8, 3)))


def test_initializer_identifiers_and_serialization():
    for identifier in ("glorot_uniform", "GlorotUniform", {"class_name": "GlorotUniform", "config": {"seed": 3}}):
        assert isinstance(initializers.get(identifier), initializers.GlorotUniform)
    assert initializers.get(None) is None
    instance = initializers.VarianceScaling(2.0, "fan_out", "uniform", seed=7)
    assert initializers.get(instance) is instance
    config = initializers.serialize(instance)
    assert config == {"module": "keras.initializers", "class_name": "VarianceScaling",
                      "config": {"seed": 7, "scale": 2.0, "mode": "fan_out", "distribution": "uniform",
                                 "input_axes": None, "output_axes": None},
                      "registered_name": None}
    assert initializers.serialize(initializers.get(config)) == config
    glorot = initializers.serialize(initializers.get("glorot_uniform"))["config"]
    assert list(glorot.items()) == [("seed", None), ("input_axes", None), ("output_axes", None)]
    assert initializers.serialize(initializers.get("zeros"))["config"] == {}
    uniform = initializers.serialize(initializers.get("random_uniform"))["config"]
    assert list(uniform.items()) == [("seed", None), ("minval", -0.05), ("maxval", 0.05)]
    assert initializers.serialize(None) is None
    with pytest.raises(ValueError, match="Could not interpret initializer identifier: 'glorot'"):
        initializers.get("glorot")
    with pytest.raises(ValueError, match="Could not interpret initializer identifier"):
        initializers.get({"class_name": "Nope", "config": {}})


@pytest.mark.parametrize(("kwargs", "fragment"), [({"scale": 0}, "scale=0"), ({"mode": "fan"}, "mode='fan'"),
                                                  ({"distribution": "cauchy"}, "distribution='cauchy'"),
                                                  ({"seed": -1}, "seed=-1"), ({"seed": 1.5}, "seed=1.5")])
def test_variance_scaling_bad_arguments(kwargs, fragment):
    with pytest.raises(ValueError) as info:
        initializers.VarianceScaling(**kwargs)
    assert fragment in str(info.value)


# ---------------------------------------------------------------------------- regularizers
W = np.array([[0.5, -2.0, 0.0], [1.5, -0.25, 3.0]])


def test_regularizer_values_and_defaults():
    assert regularizers.get("l1")(W) == pytest.approx(0.01 * 7.25)
    assert regularizers.get("l2")(W) == pytest.approx(0.01 * (0.25 + 4 + 2.25 + 0.0625 + 9))
    assert regularizers.get("l1l2")(W) == 0.0
    assert regularizers.L1L2(l1=0.1, l2=0.2)(W) == pytest.approx(0.1 * 7.25 + 0.2 * 15.5625)
    assert regularizers.get("L1L2").get_config() == {"l1": 0.0, "l2": 0.0}
    assert regularizers.get("l1").get_config() == {"l1": 0.01}
    assert regularizers.get("l2").get_config() == {"l2": 0.01}


@pytest.mark.parametrize("reg", [regularizers.L1(0.3), regularizers.L2(0.7), regularizers.L1L2(0.2, 0.5)])
def test_regularizer_gradient_by_finite_differences(reg):
    w = W + 0.1  # away from the kink of |x| at 0
    eps = 1e-6
    numeric = np.zeros_like(w)
    for index in np.ndindex(*w.shape):
        plus, minus = w.copy(), w.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric[index] = (reg(plus) - reg(minus)) / (2 * eps)
    np.testing.assert_allclose(reg.gradient(w), numeric, rtol=1e-6, atol=1e-9)
    assert regularizers.L1(0.3).gradient(np.zeros(3)).tolist() == [0.0, 0.0, 0.0]


def test_regularizer_identifiers():
    assert isinstance(regularizers.get("l1_l2"), regularizers.L1L2)
    config = regularizers.serialize(regularizers.L1L2(0.5, 0.25))
    assert config == {"module": "keras.regularizers", "class_name": "L1L2", "config": {"l1": 0.5, "l2": 0.25},
                      "registered_name": None}
    assert regularizers.serialize(regularizers.get(config)) == config
    with pytest.raises(ValueError, match="Could not interpret regularizer identifier: 'l3'"):
        regularizers.get("l3")
    for bad in (-0.1, float("nan"), "big", float("inf")):
        with pytest.raises(ValueError, match="Invalid value for argument l2"):
            regularizers.L2(bad)


# ---------------------------------------------------------------------------- constraints
KERNEL = np.random.default_rng(0).standard_normal((3, 4, 2)) * 2


@pytest.mark.parametrize("axis", [0, 1, [0, 1], -1])
def test_max_norm(axis):
    n = ref.norms_along(KERNEL, axis)
    want = KERNEL * np.minimum(n, 2.0) / (1e-7 + n)
    np.testing.assert_allclose(constraints.MaxNorm(2, axis)(KERNEL), want, rtol=1e-14)
    assert np.all(ref.norms_along(constraints.MaxNorm(2, axis)(KERNEL), axis) <= 2.0 + 1e-9)


@pytest.mark.parametrize("axis", [0, [0, 1]])
def test_unit_and_min_max_norm(axis):
    n = ref.norms_along(KERNEL, axis)
    np.testing.assert_allclose(constraints.UnitNorm(axis)(KERNEL), KERNEL / (1e-7 + n), rtol=1e-14)
    want = KERNEL * (0.3 * np.clip(n, 0.5, 1.5) + 0.7 * n) / (1e-7 + n)
    np.testing.assert_allclose(constraints.MinMaxNorm(0.5, 1.5, 0.3, axis)(KERNEL), want, rtol=1e-14)


def test_non_neg_and_dtype():
    w = KERNEL.astype(np.float32)
    got = constraints.get("non_neg")(w)
    np.testing.assert_array_equal(got, np.where(w > 0, w, 0))
    for name in ("max_norm", "min_max_norm", "non_neg", "unit_norm"):
        assert constraints.get(name)(w).dtype == np.float32
    np.testing.assert_array_equal(w, KERNEL.astype(np.float32))  # not modified


def test_constraint_identifiers():
    assert constraints.get("max_norm").get_config() == {"max_value": 2, "axis": 0}
    assert constraints.get("MinMaxNorm").get_config() == {"min_value": 0.0, "max_value": 1.0, "rate": 1.0, "axis": 0}
    assert constraints.get("unit_norm").get_config() == {"axis": 0}
    assert constraints.serialize(constraints.NonNeg()) == {"module": "keras.constraints", "class_name": "NonNeg",
                                                           "config": {}, "registered_name": None}
    config = constraints.serialize(constraints.MaxNorm(3.0, [0, 1]))
    assert constraints.serialize(constraints.get(config)) == config
    with pytest.raises(ValueError, match="Could not interpret constraint identifier: 'positive'"):
        constraints.get("positive")


def test_float16_activations():
    x = POINTS.astype(np.float16)
    for name in ref.ACTIVATIONS:
        got = activations.get(name)(x)
        assert got.dtype == np.float16 and activations.get(name).derivative(x).dtype == np.float16
        np.testing.assert_allclose(got.astype(np.float64), ref.activation(name, x), rtol=2e-3, atol=2e-3)
