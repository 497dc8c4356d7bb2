"""Explicit padding amounts (``_geometry.ExplicitPadding``, what the PyTorch bridge passes) against the reference.

The reference pads the inputs with zeros (NumPy) and convolves ``valid``; its gradients with respect to
the padded inputs, cropped, are the input gradients.
"""

import numpy as np
import pytest

import numba_dwconv as nd
from numba_dwconv import reference as ref
from numba_dwconv._geometry import ExplicitPadding

CASES = [  # rank, channels_last, kernel, length, stride, dilation, pads, multiplier
    (1, True, (3,), (10,), (2,), (1,), ((1, 1),), 1),
    (1, False, (5,), (7,), (3,), (2,), ((4, 4),), 2),
    (1, True, (2,), (6,), (1,), (1,), ((7, 0),), 1),  # more padding than the kernel reaches
    (2, True, (3, 3), (9, 8), (2, 2), (1, 1), ((1, 1), (1, 1)), 1),
    (2, False, (3, 2), (7, 6), (1, 2), (2, 1), ((0, 3), (2, 2)), 2),
]


def _axes(rank, channels_last):
    return tuple(range(1, 1 + rank)) if channels_last else tuple(range(2, 2 + rank))


@pytest.mark.parametrize("rank,channels_last,kernel,length,stride,dilation,pads,mult", CASES)
def test_explicit_padding_equals_padded_valid_reference(rank, channels_last, kernel, length, stride, dilation, pads,
                                                        mult):
    rng = np.random.default_rng(sum(kernel) + sum(length))
    channels = 3
    x = rng.standard_normal((2, *length, channels) if channels_last else (2, channels, *length))
    k = rng.standard_normal((*kernel, channels, mult))
    b = rng.standard_normal(channels * mult)
    widths = [(0, 0)] * x.ndim
    for axis, pair in zip(_axes(rank, channels_last), pads):
        widths[axis] = pair
    padded = np.pad(x, widths)
    fmt = "channels_last" if channels_last else "channels_first"
    forward_ref = ref.conv1d_forward if rank == 1 else ref.conv2d_forward
    grads_ref = ref.conv1d_gradients if rank == 1 else ref.conv2d_gradients
    s, d = (stride[0], dilation[0]) if rank == 1 else (stride, dilation)
    want = forward_ref(padded, k, b, s, "valid", fmt, d)
    forward = nd.depthwise_conv1d if rank == 1 else nd.depthwise_conv2d
    backward = nd.depthwise_conv1d_backward if rank == 1 else nd.depthwise_conv2d_backward
    got = forward(x, k, b, stride, ExplicitPadding(pads), fmt, dilation)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(want.shape)
    want_grads = grads_ref(g, padded, k, s, "valid", fmt, d)
    crop = tuple(slice(before, before + n) for (before, _), n in zip(widths, x.shape))
    grads = backward(g, x, k, stride, ExplicitPadding(pads), fmt, dilation)
    for got_grad, want_grad in zip(grads, (want_grads[0][crop],) + tuple(want_grads[1:])):
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-12, atol=1e-12)


def test_explicit_padding_is_checked():
    with pytest.raises(ValueError, match=">= 0"):
        ExplicitPadding(((1, -1),))
    with pytest.raises(ValueError, match="one \\(before, after\\) pair per spatial axis"):
        nd.depthwise_conv2d(np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 1)), padding=ExplicitPadding(((1, 1),)))
    with pytest.raises(ValueError, match="output size"):
        nd.depthwise_conv1d(np.ones((1, 2, 1)), np.ones((5, 1, 1)), padding=ExplicitPadding(((1, 0),)))
    with pytest.raises(ValueError, match="padding"):  # a plain tuple is not a padding of the public API
        nd.depthwise_conv1d(np.ones((1, 4, 1)), np.ones((3, 1, 1)), padding=((1, 1),))
