"""Configs and weights written by Keras itself load here (recorded by tests/data/make_keras_fixtures.py)."""

import copy
import json
import pathlib

import numpy as np
import pytest

import numba_dwconv as nd
from numba_dwconv import initializers

DATA = pathlib.Path(__file__).parent / "data"
RECORDS = sorted(DATA.glob("keras_*.json"))


def _record(path):
    return json.loads(path.read_text()), np.load(path.with_suffix(".npz"))


def _json(value):
    """Tuples as lists, as a config reads after a JSON round trip."""
    return json.loads(json.dumps(value))


def _without_fan_axes(config):
    """A config as Keras 3.0-3.14 wrote it: initializers without input_axes/output_axes."""
    if isinstance(config, dict):
        return {k: _without_fan_axes(v) for k, v in config.items() if k not in ("input_axes", "output_axes")}
    if isinstance(config, list):
        return [_without_fan_axes(v) for v in config]
    return config


def test_recorded_keras_versions_exist():
    assert RECORDS, "tests/data/keras_*.json missing: run tests/data/make_keras_fixtures.py"


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: p.stem)
def test_initializer_configs_are_keras_exact(path):
    record, _ = _record(path)
    for name, serialized in record["initializers"].items():
        ours = initializers.get(serialized)
        assert type(ours).__name__ == name
        assert list(initializers.serialize(ours)["config"]) == list(serialized["config"]), name  # key order too
        assert _json(initializers.serialize(ours)) == serialized, name
        older = _without_fan_axes(serialized)
        assert type(initializers.get(older)).__name__ == name


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: p.stem)
def test_fan_axes_follow_keras(path):
    record, _ = _record(path)
    fan_axes = record["fan_axes"]
    init = initializers.get(fan_axes["config"])
    assert initializers.compute_fans(fan_axes["shape"], init.input_axes, init.output_axes) == (5, 12)
    assert initializers.compute_fans((5, 3, 4)) == (15, 20)  # without axes: the receptive-field rule
    draws = init((400, 30, 40))  # input axis 400, output axes 30*40: std sqrt(2 / ((400 + 1200) / 2))
    assert abs(draws.std() - np.sqrt(2.0 / 800)) < 0.02 * np.sqrt(2.0 / 800)
    with pytest.raises(ValueError, match="input_axes"):
        initializers.VarianceScaling(input_axes=[5], output_axes=[0])((3, 4))
    with pytest.raises(ValueError, match="output_axes"):
        initializers.GlorotUniform(input_axes=[0], output_axes="last")


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: p.stem)
def test_layer_configs_round_trip(path):
    record, _ = _record(path)
    for model in record["models"].values():
        for class_name, config in zip(model["classes"], model["layers"]):
            layer = getattr(nd, class_name).from_config(config)
            assert list(layer.get_config()) == list(config)
            assert _json(layer.get_config()) == config
            assert _json(getattr(nd, class_name).from_config(_without_fan_axes(config)).get_config()) == config


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: p.stem)
def test_keras_sequential_loads_and_matches_keras_outputs(path):
    record, arrays = _record(path)
    for name, model_record in record["models"].items():
        model = nd.Sequential.from_config(model_record["config"])
        assert model.built and model.name == name
        weights = [arrays[k] for k in sorted(arrays.files) if k.startswith(f"{name}/weight_")]
        model.set_weights(weights)
        got = model(arrays[f"{name}/input"])
        np.testing.assert_allclose(got, arrays[f"{name}/output"], rtol=1e-5, atol=1e-5)
        older = _without_fan_axes(model_record["config"])
        assert nd.Sequential.from_config(older).built


def test_sequential_config_errors_name_the_problem():
    record, _ = _record(RECORDS[-1])
    config = copy.deepcopy(record["models"]["model_1d"]["config"])
    config["layers"][1]["class_name"] = "Dense"
    with pytest.raises(ValueError, match=r"'Dense'.*DepthwiseConv1D.*SeparableConv2D"):
        nd.Sequential.from_config(config)
    for bad in (None, [], {"layers": "x"}, {"layers": [3]}, {"layers": [{"class_name": "DepthwiseConv1D"}]}):
        with pytest.raises(ValueError, match="config"):
            nd.Sequential.from_config(bad)
    config = copy.deepcopy(record["models"]["model_1d"]["config"])
    config["layers"][1]["config"]["kernel_sise"] = 3
    with pytest.raises(ValueError, match="kernel_sise"):
        nd.Sequential.from_config(config)
    config = copy.deepcopy(record["models"]["model_1d"]["config"])
    config["dtype"] = {"class_name": "DTypePolicy", "config": "float32"}
    with pytest.raises(ValueError, match="dtype"):
        nd.Sequential.from_config(config)


@pytest.mark.parametrize("dtype", [{"config": {}}, {"class_name": "DTypePolicy", "config": {"name": 3}},
                                   {"class_name": "Other", "config": {"name": "float32"}}, {"config": None}])
def test_malformed_dtype_dicts_are_value_errors(dtype):
    with pytest.raises(ValueError, match="dtype"):
        nd.DepthwiseConv1D(3, dtype=dtype)


@pytest.mark.parametrize("identifier", [{"class_name": "GlorotUniform", "config": {"sed": 1}},
                                        {"class_name": 3}, {"config": {}}, {"class_name": "GlorotUniform",
                                                                             "config": [1]}])
def test_malformed_identifier_dicts_are_value_errors(identifier):
    with pytest.raises(ValueError, match="Could not interpret initializer identifier"):
        nd.DepthwiseConv1D(3, depthwise_initializer=identifier)
