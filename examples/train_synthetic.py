"""Train a small stack of numba_dwconv layers on a synthetic causal signal task (CPU, well under a minute).

The task: from 4 noisy input channels, predict 2 output channels made by a fixed
causal, non-linear filter of the clean inputs (a smoothed product and a delayed
difference).  A ``Sequential`` model of three layers is trained with Adam on mean
squared error (``model.backward`` runs every layer's backward pass in reverse):

    SeparableConv1D(16, 5, causal, relu) -> DepthwiseConv1D(7, causal, dilation 2, tanh)
    -> SeparableConv1D(2, 3, causal)

Run:  python examples/train_synthetic.py [--steps 300] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import numba_dwconv as nd


def make_batch(rng, batch=32, length=256, noise=0.1):
    """Noisy inputs (batch, length, 4) and the clean causal targets (batch, length, 2)."""
    t = np.arange(length)
    freqs = rng.uniform(0.01, 0.08, size=(batch, 1, 4))
    phases = rng.uniform(0, 2 * np.pi, size=(batch, 1, 4))
    clean = np.sin(2 * np.pi * freqs * t[None, :, None] + phases)
    product = clean[:, :, 0] * clean[:, :, 1]
    smoothed = np.zeros_like(product)  # causal moving average over 4 steps
    for lag in range(4):
        smoothed[:, lag:] += product[:, : length - lag] / 4
    delayed = np.zeros_like(product)
    delayed[:, 3:] = clean[:, 3:, 2] - clean[:, :-3, 3]
    inputs = clean + noise * rng.standard_normal(clean.shape)
    targets = np.stack([smoothed, 0.5 * delayed], axis=-1)
    return inputs.astype(np.float32), targets.astype(np.float32)


def build_model(device, seed=0):
    """The three-layer causal model (initial weights drawn from ``seed``)."""
    init = nd.initializers
    return nd.Sequential([
        nd.SeparableConv1D(16, 5, padding="causal", activation="relu", depthwise_initializer=init.HeUniform(seed),
                           pointwise_initializer=init.GlorotUniform(seed + 1), device=device, name="mix"),
        nd.DepthwiseConv1D(7, padding="causal", dilation_rate=2, activation="tanh",
                           depthwise_initializer=init.GlorotUniform(seed + 2),
                           depthwise_regularizer=nd.regularizers.L2(1e-4), device=device, name="context"),
        nd.SeparableConv1D(2, 3, padding="causal", depthwise_initializer=init.GlorotUniform(seed + 3),
                           pointwise_initializer=init.GlorotUniform(seed + 4), device=device, name="readout"),
    ], name="causal_filter")


def main(argv=None):
    """Train and print the test loss every 50 steps; return the test losses."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    model = build_model(args.device, args.seed)
    optimizer = nd.optimizers.Adam(learning_rate=3e-3)
    test_x, test_y = make_batch(np.random.default_rng(12345), batch=64)
    model.build(test_x.shape)
    model.summary()
    start = time.perf_counter()
    history = []
    for step in range(args.steps + 1):
        if step % 50 == 0:  # evaluate before the training call: backward() uses the last call's inputs
            test_loss = float(np.mean((model(test_x) - test_y) ** 2))
            history.append(test_loss)
            print(f"step {step:4d}  test mse {test_loss:.5f}  ({time.perf_counter() - start:5.1f} s)", flush=True)
        if step == args.steps:
            break
        x, y = make_batch(rng)
        error = model(x) - y
        model.backward(2.0 * error / error.size)  # d mean(error^2) / d outputs (+ the layers' penalties)
        optimizer.step(model)
    print(f"test mse {history[0]:.5f} -> {history[-1]:.5f} in {time.perf_counter() - start:.1f} s")
    return history


if __name__ == "__main__":
    main()
