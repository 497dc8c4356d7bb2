"""The reference itself, against values worked out by hand."""

import numpy as np
import pytest

from numba_dwconv import reference as ref


def test_valid_two_tap_sum():
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1)
    kernel = np.array([1.0, 10.0]).reshape(2, 1, 1)
    y = ref.conv1d_forward(x, kernel)
    np.testing.assert_array_equal(y.ravel(), [21.0, 32.0, 43.0])


def test_causal_reads_only_the_past():
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1)
    kernel = np.array([1.0, 10.0]).reshape(2, 1, 1)  # y[t] = x[t-1] + 10 x[t]
    y = ref.conv1d_forward(x, kernel, padding="causal")
    np.testing.assert_array_equal(y.ravel(), [10.0, 21.0, 32.0])


def test_same_stride_two_extra_zero_on_the_right():
    # L=4, K=2, s=2: out=2, total pad = max((2-1)*2 + 2 - 4, 0) = 0
    # L=5, K=2, s=2: out=3, total pad = 1 -> (0, 1)
    x = np.arange(1.0, 6.0).reshape(1, 5, 1)
    kernel = np.array([1.0, 100.0]).reshape(2, 1, 1)
    y = ref.conv1d_forward(x, kernel, stride=2, padding="same")
    np.testing.assert_array_equal(y.ravel(), [201.0, 403.0, 5.0])


def test_depth_multiplier_channel_order_and_bias():
    x = np.array([[1.0, 2.0]]).reshape(1, 1, 2)  # one position, channels (1, 2)
    kernel = np.array([[[3.0, 4.0], [5.0, 6.0]]])  # (K=1, C=2, m=2)
    y = ref.conv1d_forward(x, kernel, bias=np.array([0.5, 0.25, 0.0, 1.0]))
    np.testing.assert_array_equal(y.ravel(), [3.5, 4.25, 10.0, 13.0])


@pytest.mark.parametrize(
    ("length", "ksize", "stride", "dilation", "expected"),
    [(10, 4, 2, 1, (1, 1, 5)), (10, 3, 2, 2, (1, 2, 5)), (7, 2, 1, 3, (1, 2, 7))],
)
def test_semantics_padding_examples(length, ksize, stride, dilation, expected):
    assert ref.padding_amounts(length, ksize, stride, dilation, "same") == expected


def test_gradients_by_hand():
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1)
    kernel = np.array([1.0, 10.0]).reshape(2, 1, 1)
    grad_y = np.array([1.0, -1.0]).reshape(1, 2, 1)  # y0 = x0 + 10 x1, y1 = x1 + 10 x2
    grad_x, grad_kernel, grad_bias = ref.conv1d_gradients(grad_y, x, kernel)
    np.testing.assert_array_equal(grad_x.ravel(), [1.0, 9.0, -10.0])
    np.testing.assert_array_equal(grad_kernel.ravel(), [1.0 - 2.0, 2.0 - 3.0])
    np.testing.assert_array_equal(grad_bias, [0.0])


def test_separable_by_hand():
    # two channels, K=2, m=1: z0 = [1+20, 2+30] = [21, 32]; z1 = [-1, -1] * ... see below
    x = np.array([[1.0, 5.0], [2.0, 6.0], [3.0, 8.0]]).reshape(1, 3, 2)
    depthwise = np.array([[[1.0], [1.0]], [[10.0], [-1.0]]])  # tap 0: (1, 1), tap 1: (10, -1)
    # z[:, 0] = x0[t] + 10 x0[t+1] = [21, 32]; z[:, 1] = x1[t] - x1[t+1] = [-1, -2]
    pointwise = np.array([[[1.0, 2.0], [3.0, 0.0]]])  # out0 = z0 + 3 z1, out1 = 2 z0
    y = ref.separable_forward(x, depthwise, pointwise, bias=np.array([0.5, -0.5]))
    np.testing.assert_array_equal(y[0], [[21 - 3 + 0.5, 42 - 0.5], [32 - 6 + 0.5, 64 - 0.5]])
    grad_y = np.zeros_like(y)
    grad_y[0, 1, 0] = 1.0  # d out[1, 0] = d(z0[1] + 3 z1[1]) = x0[1] + 10 x0[2] + 3 (x1[1] - x1[2])
    gx, gdw, gpw, gb = ref.separable_gradients(grad_y, x, depthwise, pointwise)
    np.testing.assert_array_equal(gx[0], [[0, 0], [1, 3], [10, -3]])
    np.testing.assert_array_equal(gdw[:, :, 0], [[2.0, 3 * 6.0], [3.0, 3 * 8.0]])
    np.testing.assert_array_equal(gpw[0], [[32.0, 0.0], [-2.0, 0.0]])
    np.testing.assert_array_equal(gb, [1.0, 0.0])


def test_conv2d_by_hand():
    x = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)  # [[1,2,3],[4,5,6],[7,8,9]]
    kernel = np.array([[1.0, 0.0], [0.0, 10.0]]).reshape(2, 2, 1, 1)  # y = x[h, w] + 10 x[h+1, w+1]
    np.testing.assert_array_equal(ref.conv2d_forward(x, kernel)[0, :, :, 0], [[51.0, 62.0], [84.0, 95.0]])
    # same, stride 2: out 2x2, total pad 1 per axis -> (0, 1): the last row/column reads zeros
    y = ref.conv2d_forward(x, kernel, stride=2, padding="same")
    np.testing.assert_array_equal(y[0, :, :, 0], [[51.0, 3.0], [7.0, 9.0]])
    grad_y = np.zeros((1, 2, 2, 1))
    grad_y[0, 1, 1, 0] = 1.0  # y[1, 1] = x[1, 1] + 10 x[2, 2]
    gx, gk, gb = ref.conv2d_gradients(grad_y, x, kernel)
    want = np.zeros((3, 3))
    want[1, 1], want[2, 2] = 1.0, 10.0
    np.testing.assert_array_equal(gx[0, :, :, 0], want)
    np.testing.assert_array_equal(gk[:, :, 0, 0], [[5.0, 6.0], [8.0, 9.0]])
    np.testing.assert_array_equal(gb, [1.0])
