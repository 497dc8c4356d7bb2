"""Bench rows of the PyTorch bridge (CPU): our modules against PyTorch's own depthwise convolutions.

Ratios are PyTorch time / ours, both measured in the same run (best of ``repeat``); > 1: we are faster.
Run ``python -m numba_dwconv.bench.torch_bridge`` for the table (PyTorch must be installed).
"""

from __future__ import annotations

import sys

from .conv1d import PUBLIC_SHAPES
from .conv2d import PUBLIC_SHAPES_2D
from .timing import best_time


def _pair(torch, ours, theirs, x, repeat):
    """(torch forward / ours, torch forward+backward / ours) through autograd.

    The backward pass gets a dense upstream gradient and computes the input, weight and bias
    gradients, as for a layer inside a network (``y.sum().backward()`` would hand both an
    expanded gradient of ones, which our kernels first materialise).
    """
    x = x.detach().requires_grad_()
    with torch.no_grad():
        grad = torch.randn_like(theirs(x))

    def step(module):
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x).backward(grad)

    with torch.no_grad():
        fwd = _ratio(lambda: theirs(x), lambda: ours(x), repeat)
    return fwd, _ratio(lambda: step(theirs), lambda: step(ours), repeat)


def _ratio(theirs, ours, repeat: int, rounds: int = 3, min_seconds: float = 0.03) -> float:
    """PyTorch's best time over ours, each the best of ``rounds`` blocks taken in turns, first one then the other.

    A block runs ``repeat`` calls and at least ``min_seconds``.  The first calls after the other library's
    run slower, on this 2-vCPU VM 1.5-5x for ~5 ms (PyTorch's OpenMP threads still spin for a while after
    its call, and a CPU that idled takes milliseconds to reach speed): single blocks of 5 calls measured
    the order more than the libraries (2D B16 56x56 C128 forward 0.71-0.95x, ~0.95 in steady state).
    """
    best = {theirs: float("inf"), ours: float("inf")}
    for r in range(rounds):
        for func in ((theirs, ours) if r % 2 == 0 else (ours, theirs)):
            best[func] = min(best[func], best_time(func, repeat, min_seconds))
    return best[theirs] / best[ours]


def module_rows(repeat: int = 5, shapes=PUBLIC_SHAPES, shapes_2d=PUBLIC_SHAPES_2D, on_row=None) -> list:
    """``DepthwiseConv1d`` vs ``nn.Conv1d(groups=C)`` (N, C, L); ``DepthwiseConv2d`` vs channels_last ``nn.Conv2d``."""
    import torch

    from ..torch import DepthwiseConv1d, DepthwiseConv2d

    rows = []
    for s in shapes:
        theirs = torch.nn.Conv1d(s.channels, s.channels * s.multiplier, s.kernel_size, groups=s.channels,
                                 padding=(s.kernel_size - 1) // 2 if s.kernel_size % 2 else 0)
        ours = DepthwiseConv1d.from_conv(theirs)
        x = torch.randn(s.batch, s.channels, s.length)
        fwd, both = _pair(torch, ours, theirs, x, repeat)
        rows.append({"shape": f"1D {s.label()} (N, C, L)", "forward": fwd, "forward_backward": both})
        if on_row is not None:
            on_row(rows[-1])
    for s in shapes_2d:
        theirs = torch.nn.Conv2d(s.channels, s.channels, s.kernel_size, stride=s.stride, groups=s.channels,
                                 padding=s.kernel_size // 2).to(memory_format=torch.channels_last)
        ours = DepthwiseConv2d.from_conv(theirs)
        x = torch.randn(s.batch, s.channels, s.height, s.width).to(memory_format=torch.channels_last)
        fwd, both = _pair(torch, ours, theirs, x, repeat)
        rows.append({"shape": f"2D {s.label()} channels_last", "forward": fwd, "forward_backward": both})
        if on_row is not None:
            on_row(rows[-1])
    return rows


def training_step_row(repeat: int = 3, batch: int = 8, length: int = 4096, channels: int = 256) -> dict:
    """A train step of four blocks (depthwise K=7, pointwise Linear, GELU): PyTorch time / time after ``convert``."""
    import copy

    import torch

    from ..torch import convert

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dw = torch.nn.Conv1d(channels, channels, 7, padding=3, groups=channels)
            self.pw = torch.nn.Linear(channels, channels)

        def forward(self, x):  # x (N, C, L) stored channels last: the Linear works on (N, L, C)
            return torch.nn.functional.gelu(self.pw(self.dw(x).transpose(1, 2))).transpose(1, 2)

    model = torch.nn.Sequential(*[Block() for _ in range(4)])
    converted = convert(copy.deepcopy(model))
    x = torch.randn(batch, length, channels).transpose(1, 2)

    def step(m, opt):
        opt.zero_grad(set_to_none=True)
        m(x).square().mean().backward()
        opt.step()

    opts = [torch.optim.SGD(m.parameters(), lr=1e-3) for m in (model, converted)]
    theirs = best_time(lambda: step(model, opts[0]), repeat)
    ours = best_time(lambda: step(converted, opts[1]), repeat)
    return {"shape": f"4 blocks N{batch} L{length} C{channels} K7", "speedup": theirs / ours}


def overhead_row(repeat: int = 2000) -> dict:
    """Per-call time of the custom op on a tiny input (N1 C64 L256), forward, no autograd."""
    import torch

    from ..torch import dwconv1d

    x = torch.randn(1, 64, 256)
    w = torch.randn(64, 1, 3)
    with torch.no_grad():
        ours = best_time(lambda: dwconv1d(x, w, padding=1), repeat)
        theirs = best_time(lambda: torch.nn.functional.conv1d(x, w, padding=1, groups=64), repeat)
    return {"ours_us": ours * 1e6, "torch_us": theirs * 1e6}


def format_module_row(r) -> str:
    """One line of the modules table."""
    return f"cpu    {r['shape']:44} forward {r['forward']:6.2f}x  forward+backward {r['forward_backward']:6.2f}x"


def bridge_report(repeat: int, quick: bool, say) -> dict:
    """Every row of the bridge, printed with ``say`` as measured; the results as a dict."""
    from .conv1d import QUICK_SHAPES
    from .conv2d import QUICK_SHAPES_2D

    say("PyTorch bridge, CPU float32 (PyTorch time / ours, > 1: we are faster; nn.Conv1d/Conv2d(groups=C) against "
        "DepthwiseConv1d/2d.from_conv of it; forward+backward: autograd with a dense upstream gradient)")
    modules = module_rows(repeat, QUICK_SHAPES if quick else PUBLIC_SHAPES,
                          QUICK_SHAPES_2D if quick else PUBLIC_SHAPES_2D, lambda row: say(format_module_row(row)))
    step = training_step_row(max(1, repeat // 2), *((2, 512, 64) if quick else ()))
    say(f"cpu    train step {step['shape']:33} {step['speedup']:6.2f}x after convert(model)")
    tiny = overhead_row(200 if quick else 2000)
    say(f"cpu    tiny call N1 C64 L256: dwconv1d {tiny['ours_us']:.1f} us, F.conv1d {tiny['torch_us']:.1f} us")
    return {"modules": modules, "training_step": step, "tiny_call": tiny}


def main() -> None:
    """Print the bridge's table (``python -m numba_dwconv.bench.torch_bridge``)."""
    bridge_report(5, "--quick" in sys.argv, print)


if __name__ == "__main__":
    main()
