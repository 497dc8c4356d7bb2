"""The training example keeps working: its test loss falls within a few dozen steps."""

import importlib.util
import pathlib

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "train_synthetic.py"


def test_training_example_loss_falls(capsys):
    spec = importlib.util.spec_from_file_location("train_synthetic", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    history = module.main(["--steps", "100", "--seed", "1"])
    assert history[-1] < 0.5 * history[0]
    assert "test mse" in capsys.readouterr().out
