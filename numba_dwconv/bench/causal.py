"""Bench rows of the sequence features: fused activations, a chunked causal stream, the decode step (CPU).

Every figure is a ratio of two times measured in the same run (best of ``repeat``), so it says what
a feature costs over the plain operation on this machine.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..layers import DepthwiseConv1D
from .conv1d import make_problem
from .timing import best_time

ACTIVATIONS = ("silu", "gelu")
DECODE = (64, 1536, 4)  # batch, channels, kernel size of the decode-step row (one token, float32)
DECODE_QUICK = (8, 256, 4)


def fused_activation_rows(shapes, repeat: int, on_row=None) -> list:
    """Per shape (channels_last, float32) and activation: forward and backward over the plain op, layer over op."""
    rows = []
    for shape in shapes:
        x, kernel, bias, _, grad_y = make_problem(shape, "channels_last")
        kw = dict(padding=shape.padding)
        plain_f = best_time(lambda: ops.depthwise_conv1d(x, kernel, bias, **kw), repeat)
        plain_b = best_time(lambda: ops.depthwise_conv1d_backward(grad_y, x, kernel, **kw), repeat)
        for name in ACTIVATIONS:
            fused_f = best_time(lambda: ops.depthwise_conv1d(x, kernel, bias, activation=name, **kw), repeat)
            fused_b = best_time(lambda: ops.depthwise_conv1d_backward(grad_y, x, kernel, bias=bias, activation=name,
                                                                       **kw), repeat)
            layer = DepthwiseConv1D(shape.kernel_size, padding=shape.padding, depth_multiplier=shape.multiplier,
                                    activation=name)
            layer.build(x.shape)
            layer_f = best_time(lambda: layer(x), repeat)
            row = {"shape": f"B{shape.batch} L{shape.length} C{shape.channels} K{shape.kernel_size}"
                            f"{' m' + str(shape.multiplier) if shape.multiplier > 1 else ''}",
                   "activation": name, "forward_over_plain": fused_f / plain_f,
                   "backward_over_plain": fused_b / plain_b, "layer_over_op": layer_f / fused_f}
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def format_activation_row(r) -> str:
    """One line of the fused-activation table."""
    return (f"cpu    {r['shape']:28} {r['activation']:6} forward {r['forward_over_plain']:5.2f}x  "
            f"backward {r['backward_over_plain']:5.2f}x  layer/op {r['layer_over_op']:5.2f}x")


def chunked_stream_row(repeat: int, quick: bool = False) -> dict:
    """A causal K=4 sequence fed in chunks with the carried state over one call on the whole sequence."""
    batch, length, channels, chunk = (2, 4096, 64, 512) if quick else (8, 16384, 256, 1024)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, length, channels), dtype=np.float32)
    kernel = rng.standard_normal((4, channels, 1), dtype=np.float32)

    def chunked():
        state = None
        for start in range(0, length, chunk):
            _, state = ops.depthwise_conv1d(x[:, start:start + chunk], kernel, padding="causal", initial_state=state,
                                            return_final_state=True)

    whole = best_time(lambda: ops.depthwise_conv1d(x, kernel, padding="causal"), repeat)
    return {"shape": f"B{batch} L{length} C{channels} K4 causal, chunks of {chunk}",
            "chunked_over_whole": best_time(chunked, repeat) / whole}


def decode_step_row(repeat: int, quick: bool = False) -> dict:
    """One-token decode step: time per call against a NumPy copy of the touched state and a NumPy step."""
    batch, channels, ksize = DECODE_QUICK if quick else DECODE
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, channels), dtype=np.float32)
    kernel = rng.standard_normal((ksize, channels, 1), dtype=np.float32)
    bias = rng.standard_normal(channels, dtype=np.float32)
    state = rng.standard_normal((batch, ksize - 1, channels), dtype=np.float32)
    copy = np.empty_like(state)
    ours = best_time(lambda: ops.depthwise_conv1d_update(x, state, kernel, bias), max(repeat, 20), 0.2)
    copied = best_time(lambda: np.copyto(copy, state), max(repeat, 20), 0.2)
    window = np.zeros((batch, ksize, channels), np.float32)
    weights = kernel[:, :, 0]

    def numpy_step():  # the textbook NumPy decode step: roll the window, append, multiply-sum
        nonlocal window
        window = np.roll(window, -1, axis=1)
        window[:, -1] = x
        return (window * weights).sum(axis=1) + bias

    numpy_time = best_time(numpy_step, max(repeat, 20), 0.2)
    return {"shape": f"B{batch} C{channels} K{ksize}, one token", "update_us": ours * 1e6,
            "over_state_copy": ours / copied, "numpy_over_ours": numpy_time / ours}


def format_sequence_rows(stream, decode) -> str:
    """The chunked-stream and decode-step lines."""
    return "\n".join([
        f"cpu    chunked stream  {stream['shape']:40} chunked / whole {stream['chunked_over_whole']:5.2f}x",
        f"cpu    decode step     {decode['shape']:40} {decode['update_us']:7.1f} us  "
        f"{decode['over_state_copy']:5.2f}x a copy of the touched state, NumPy step / ours "
        f"{decode['numpy_over_ours']:5.1f}x",
    ])
