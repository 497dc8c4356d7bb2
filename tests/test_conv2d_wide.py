"""The 2D kernels of wide kernels in registers (numba_dwconv.cpu.conv2d_last_wide): forward, gradients, layouts."""

import numpy as np
import pytest
from cases import assert_close
from test_conv2d import make_case2d

import numba_dwconv as nd
from numba_dwconv import reference as ref
from numba_dwconv._geometry import ExplicitPadding


@pytest.mark.parametrize("kernel_size, strides, padding, dilation, mult, width", [
    ((7, 7), 1, "same", 1, 1, 13),          # 13 columns: a block of eight and one overlapping it
    ((9, 7), (2, 1), "same", (2, 1), 1, 16),  # row stride and dilation
    ((7, 9), 1, "valid", 1, 1, 20),
    ((7, 7), 1, ExplicitPadding(((2, 5), (4, 1))), 1, 2, 11),  # explicit padding (the PyTorch bridge's), m = 2
    ((3, 13), 1, "same", 1, 1, 17),          # more than 25 taps, narrow rows of taps
    ((13, 31), 1, "same", 1, 1, 9),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("group_bytes", [None, 1])
def test_forward_of_wide_kernels_in_registers(kernel_size, strides, padding, dilation, mult, width, dtype, group_bytes,
                                              monkeypatch):
    """Kernels of more than 25 taps, or 7 and more columns, take the register-tiled forward (conv2d_last_wide).

    With ``group_bytes`` = 1 every tap row is its own group: the partial sums go through the output
    between tap rows (and the last, overlapping block stores only its new columns).
    """
    from numba_dwconv.cpu import conv2d_wide

    if group_bytes is not None:
        monkeypatch.setattr(conv2d_wide, "GROUP_BYTES", group_bytes)
    taken, real = [], conv2d_wide.fits
    monkeypatch.setattr(conv2d_wide, "fits", lambda p, k: taken.append(real(p, k)) or taken[-1])
    rng = np.random.default_rng(kernel_size[0] * 100 + kernel_size[1] + width)
    channels = 32 // mult
    x, kernel, bias = make_case2d(rng, 2, 10, width, channels, kernel_size, mult, "channels_last", dtype)
    def reference(x, kernel, bias):  # (explicit padding: the reference on the padded input)
        if isinstance(padding, str):
            return ref.conv2d_forward(x, kernel, bias, strides, padding, "channels_last", dilation)
        padded = np.pad(x, ((0, 0), *padding, (0, 0)))
        return ref.conv2d_forward(padded, kernel, bias, strides, "valid", "channels_last", dilation)

    for activation in (None, "relu"):
        y = nd.depthwise_conv2d(x, kernel, bias, strides, padding, "channels_last", dilation, activation=activation)
        want = reference(x, kernel, bias)
        assert_close(y, ref.activation(activation, want) if activation else want, dtype)
    assert taken == [True, True]
    odd = make_case2d(rng, 1, 10, width, 12, kernel_size, 1, "channels_last", dtype)  # 12 channels: not whole vectors
    y = nd.depthwise_conv2d(*odd, strides, padding, "channels_last", dilation)
    assert_close(y, reference(*odd), dtype)
    assert taken[-1] is False


@pytest.mark.parametrize("kernel_size, padding, dilation, width, mult", [
    ((7, 7), "same", 1, 13, 1),
    ((9, 7), "same", (2, 1), 16, 1),
    ((7, 9), "valid", 1, 20, 1),
    ((3, 13), "same", 1, 17, 1),
    ((13, 31), "same", 1, 9, 1),
    ((7, 7), ExplicitPadding(((1, 8), (2, 3))), 1, 19, 1),  # more padding after than the kernel reaches
    ((7, 7), ExplicitPadding(((8, 1), (2, 3))), 1, 19, 1),  # and before: the gather (a negative transposed padding)
    ((7, 7), "same", 1, 13, 2),  # a multiplier: the gather (each group of repeated channels summed)
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("group_bytes", [None, 1])
def test_input_grad_of_wide_kernels_as_a_transposed_forward(kernel_size, padding, dilation, width, mult, dtype,
                                                            group_bytes, monkeypatch):
    """Unit strides, m = 1: a wide kernel's input gradient is the register-tiled forward over the output gradient."""
    from numba_dwconv.cpu import conv2d_wide

    if group_bytes is not None:
        monkeypatch.setattr(conv2d_wide, "GROUP_BYTES", group_bytes)
    taken, real = [], conv2d_wide.fits
    monkeypatch.setattr(conv2d_wide, "fits", lambda p, k: taken.append(real(p, k)) or taken[-1])
    rng = np.random.default_rng(kernel_size[0] * 100 + kernel_size[1] + width)
    x, kernel, _ = make_case2d(rng, 2, 12, width, 16, kernel_size, mult, "channels_last", dtype)
    y = nd.depthwise_conv2d(x, kernel, None, 1, padding, "channels_last", dilation)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    taken.clear()
    got = nd.depthwise_conv2d_input_grad(grad_y, kernel, x.shape[1:3], 1, padding, "channels_last", dilation)
    if isinstance(padding, str):
        want = ref.conv2d_gradients(grad_y, x, kernel, 1, padding, "channels_last", dilation)[0]
    else:
        padded = np.pad(x, ((0, 0), *padding, (0, 0)))
        want = ref.conv2d_gradients(grad_y, padded, kernel, 1, "valid", "channels_last", dilation)[0]
        want = want[:, padding[0][0]:padding[0][0] + x.shape[1], padding[1][0]:padding[1][0] + x.shape[2]]
    assert_close(got, want, dtype)
    assert taken == ([] if padding == ((8, 1), (2, 3)) or mult > 1 else [True])


@pytest.mark.parametrize("kernel_size, strides, padding, dilation, mult, taken", [
    ((7, 7), 1, "same", 1, 1, True),          # one group of eight taps, the eighth not stored
    ((9, 7), (2, 1), "same", (2, 1), 1, True),
    ((7, 13), 1, "valid", 1, 1, True),        # two groups, the second overlapping the first
    ((7, 7), 1, ExplicitPadding(((2, 5), (4, 1))), 1, 2, True),
    ((13, 31), 1, "same", 1, 1, True),
    ((9, 9), 1, "same", 1, 1, False),         # 16 taps' work for 9: the compile-time-width kernel
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_grad_of_wide_kernels_in_registers(kernel_size, strides, padding, dilation, mult, taken, dtype,
                                                  monkeypatch):
    """Wide kernels' kernel and bias gradients: eight taps of a channel vector in registers over the rows."""
    from numba_dwconv.cpu import conv2d_wide

    seen, real = [], conv2d_wide.kernel_grad_fits
    monkeypatch.setattr(conv2d_wide, "kernel_grad_fits", lambda p: seen.append(real(p)) or seen[-1])
    rng = np.random.default_rng(kernel_size[0] * 100 + kernel_size[1] + mult)
    x, kernel, bias = make_case2d(rng, 2, 11, 17, 32 // mult, kernel_size, mult, "channels_last", dtype)
    y = nd.depthwise_conv2d(x, kernel, bias, strides, padding, "channels_last", dilation)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    grad_k, grad_b = nd.depthwise_conv2d_kernel_grad(grad_y, x, kernel_size, strides, padding, "channels_last",
                                                     dilation)
    if isinstance(padding, str):
        want = ref.conv2d_gradients(grad_y, x, kernel, strides, padding, "channels_last", dilation)
    else:
        padded = np.pad(x, ((0, 0), *padding, (0, 0)))
        want = ref.conv2d_gradients(grad_y, padded, kernel, strides, "valid", "channels_last", dilation)
    assert_close(grad_k, want[1], dtype)
    assert_close(grad_b, want[2], dtype)
    assert seen == [taken]
