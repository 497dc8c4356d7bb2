"""GPU kernel of the causal decode step (:func:`numba_dwconv.depthwise_conv1d_update`).

One thread per (row, channel): it computes that channel's ``m`` outputs at every new position and
then shifts that channel of the row's state slot (see :mod:`numba_dwconv.cpu.update` for the
arithmetic).  Rows never share a slot and a thread owns its channel, so no two threads write one
state element.  float16 data accumulates in float32.
"""

from __future__ import annotations

import functools

from numba import cuda, float32


@functools.lru_cache(maxsize=None)
def update_kernel(channels_last: bool, half: bool):
    """The decode-step kernel of one layout (``x``, ``state``, ``out`` 3D; ``kernel`` (K, C, m))."""

    @cuda.jit
    def update(x, state, kernel, bias, slots, dilation, out):
        ksize, channels, mult = kernel.shape
        batch = x.shape[0]
        steps = x.shape[1] if channels_last else x.shape[2]
        positions = state.shape[1] if channels_last else state.shape[2]
        c = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        b = cuda.blockIdx.y
        while b < batch:
            if c < channels:
                s = slots[b]
                for t in range(steps):
                    for q in range(mult):
                        o = c * mult + q
                        acc = float32(bias[o]) if half else bias[o]
                        if s >= 0:
                            for i in range(ksize):
                                j = t + i * dilation
                                if channels_last:
                                    v = state[s, j, c] if j < positions else x[b, j - positions, c]
                                else:
                                    v = state[s, c, j] if j < positions else x[b, c, j - positions]
                                acc += (float32(v) if half else v) * kernel[i, c, q]
                        else:
                            acc = 0
                        if channels_last:
                            out[b, t, o] = acc
                        else:
                            out[b, o, t] = acc
                if s >= 0:
                    for j in range(positions):
                        src = steps + j
                        if channels_last:
                            state[s, j, c] = state[s, src, c] if src < positions else x[b, src - positions, c]
                        else:
                            state[s, c, j] = state[s, c, src] if src < positions else x[b, c, src - positions]
            b += cuda.gridDim.y

    return update


def run_update(x, state, kernel, bias, slots, dilation, out, channels_last: bool, stream=0) -> None:
    """Launch the decode step: ``threads`` channels per block, one grid row per batch row (grid-stride)."""
    channels = kernel.shape[1]
    threads = 128
    grid = (max(1, -(-channels // threads)), max(1, min(x.shape[0], 65535)))
    half = str(x.dtype) == "float16"
    update_kernel(channels_last, half)[grid, threads, stream](x, state, kernel, bias, slots, dilation, out)
