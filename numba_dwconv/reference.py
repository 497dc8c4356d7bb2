"""Slow, obviously correct NumPy reference: the truth the kernels are tested against.

Public (``from numba_dwconv import reference``) so that users can check results
too; it imports nothing but NumPy and the standard library, and nothing else of
the package.  Written independently of the kernels and of
``numba_dwconv._geometry``: it computes the padding straight from SEMANTICS.md,
works in float64 and channels_last, and loops over the kernel taps.  Each tap
reads a *window* of the zero-padded input: the input values where the tap's
positions fall inside the input and real zeros where they fall on padding, so
padding takes part in every product exactly as in Keras (``0 * inf`` is NaN).
Windows are gathered position by position with Python integers, so huge strides
and dilations never allocate a padded copy and never overflow.  Gradients are the
chain rule of that same loop.  Also here: scalar formulas of the activations and
Keras' optimizer updates, one element at a time.

Functions
---------
conv1d_forward, conv1d_gradients, separable_forward, separable_gradients
    1D depthwise and separable convolution, ``(batch, length, channels)`` or
    ``(batch, channels, length)``.
conv2d_forward, conv2d_gradients, separable2d_forward, separable2d_gradients
    The same in 2D.
conv1d_with_state, conv1d_with_state_gradients, conv1d_update
    Causal 1D convolution continuing from a state (the inputs before position 0), and the
    decode step over state slots.
conv1d_packed, conv1d_packed_gradients
    Causal 1D convolution of sequences packed along each row, one sequence at a time.
"""

import math

import numpy as np


def padding_amounts(length, kernel_size, stride, dilation, padding):
    """(pad_left, pad_right, out_length), straight from SEMANTICS.md."""
    extent = (kernel_size - 1) * dilation + 1
    padding = padding.lower()
    if padding == "valid":
        return 0, 0, (length - extent) // stride + 1
    out_length = math.ceil(length / stride)
    if padding == "same":
        total = max((out_length - 1) * stride + extent - length, 0)
        return total // 2, total - total // 2, out_length
    if padding == "causal":
        return extent - 1, 0, out_length
    raise ValueError(padding)


def _channels_last(array, data_format):
    return array if data_format == "channels_last" else np.swapaxes(array, 1, 2)


def _tap_positions(i, dilation, stride, out_length, pad_left, length):
    """Indices into the padded input's positions read by tap ``i``: (output index, input index) of the real inputs."""
    pairs = [(t, t * stride + i * dilation - pad_left) for t in range(out_length)]
    inside = [(t, p) for t, p in pairs if 0 <= p < length]
    return np.array([t for t, _ in inside], dtype=np.intp), np.array([p for _, p in inside], dtype=np.intp)


def _window(x, axis, outs, ins, out_length):
    """``x`` read at tap positions along ``axis``: the inputs at ``ins`` placed at ``outs``, zeros elsewhere."""
    shape = list(x.shape)
    shape[axis] = out_length
    window = np.zeros(shape)
    index = [slice(None)] * x.ndim
    source = list(index)
    index[axis], source[axis] = outs, ins
    window[tuple(index)] = x[tuple(source)]
    return window


def _scatter(grad_window, axis, outs, ins, length):
    """Adjoint of :func:`_window`: ``grad_window`` at ``outs`` added into a zero array at ``ins``."""
    shape = list(grad_window.shape)
    shape[axis] = length
    grad = np.zeros(shape)
    index = [slice(None)] * grad_window.ndim
    source = list(index)
    index[axis], source[axis] = ins, outs
    np.add.at(grad, tuple(index), grad_window[tuple(source)])
    return grad


def conv1d_forward(x, kernel, bias=None, stride=1, padding="valid", data_format="channels_last", dilation=1):
    """``y[b, t, c*m + j] = sum_i xpad[b, t*s + i*d, c] * kernel[i, c, j] (+ bias[c*m + j])`` in float64."""
    x = _channels_last(np.asarray(x, dtype=np.float64), data_format)
    kernel = np.asarray(kernel, dtype=np.float64)
    batch, length, channels = x.shape
    ksize, _, mult = kernel.shape
    pad_left, _, out_length = padding_amounts(length, ksize, stride, dilation, padding)
    y = np.zeros((batch, out_length, channels, mult))
    for i in range(ksize):
        outs, ins = _tap_positions(i, dilation, stride, out_length, pad_left, length)
        window = _window(x, 1, outs, ins, out_length)  # (B, L_out, C): inputs and padding zeros
        y += window[:, :, :, None] * kernel[i][None, None, :, :]
    y = y.reshape(batch, out_length, channels * mult)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return _channels_last(y, data_format)


def conv1d_gradients(grad_y, x, kernel, stride=1, padding="valid", data_format="channels_last", dilation=1):
    """``(grad_x, grad_kernel, grad_bias)`` of ``sum(y * grad_y)``, by the chain rule of the loop above."""
    x = _channels_last(np.asarray(x, dtype=np.float64), data_format)
    grad_y = _channels_last(np.asarray(grad_y, dtype=np.float64), data_format)
    kernel = np.asarray(kernel, dtype=np.float64)
    batch, length, channels = x.shape
    ksize, _, mult = kernel.shape
    pad_left, _, out_length = padding_amounts(length, ksize, stride, dilation, padding)
    grad_y4 = grad_y.reshape(batch, out_length, channels, mult)
    grad_x = np.zeros_like(x)
    grad_kernel = np.zeros_like(kernel)
    for i in range(ksize):
        outs, ins = _tap_positions(i, dilation, stride, out_length, pad_left, length)
        grad_window = np.sum(grad_y4 * kernel[i][None, None, :, :], axis=3)  # what the tap's window receives
        grad_x += _scatter(grad_window, 1, outs, ins, length)  # the padding's share is dropped
        window = _window(x, 1, outs, ins, out_length)
        grad_kernel[i] = np.sum(window[:, :, :, None] * grad_y4, axis=(0, 1))
    grad_bias = grad_y.sum(axis=(0, 1))
    return _channels_last(grad_x, data_format), grad_kernel, grad_bias


def _along_length(data_format):
    return 1 if data_format == "channels_last" else 2


def conv1d_with_state(x, kernel, bias, state, data_format="channels_last", dilation=1):
    """``(outputs, final_state)`` of a causal convolution whose inputs before position 0 are ``state``.

    The outputs are the last ``L`` outputs of the causal convolution of ``[state, x]``; the final
    state is the last ``(K-1)*d`` positions of ``[state, x]``.
    """
    axis = _along_length(data_format)
    joined = np.concatenate([np.asarray(state, dtype=np.float64), np.asarray(x, dtype=np.float64)], axis=axis)
    length = np.shape(x)[axis]
    positions = (np.shape(kernel)[0] - 1) * dilation
    y = conv1d_forward(joined, kernel, bias, 1, "causal", data_format, dilation)
    y = y[:, -length:] if axis == 1 else y[:, :, -length:]
    total = joined.shape[axis]
    final = joined[:, total - positions:] if axis == 1 else joined[:, :, total - positions:]
    return y, final


def conv1d_with_state_gradients(grad_y, x, kernel, state, data_format="channels_last", dilation=1):
    """``(grad_x, grad_kernel, grad_bias, grad_state)`` of ``sum(conv1d_with_state(...)[0] * grad_y)``."""
    axis = _along_length(data_format)
    joined = np.concatenate([np.asarray(state, dtype=np.float64), np.asarray(x, dtype=np.float64)], axis=axis)
    positions = np.shape(state)[axis]
    grad_y = np.asarray(grad_y, dtype=np.float64)
    zeros = np.zeros(grad_y.shape[:axis] + (positions,) + grad_y.shape[axis + 1:])
    grad_joined, grad_kernel, grad_bias = conv1d_gradients(np.concatenate([zeros, grad_y], axis=axis), joined,
                                                           kernel, 1, "causal", data_format, dilation)
    if axis == 1:
        return grad_joined[:, positions:], grad_kernel, grad_bias, grad_joined[:, :positions]
    return grad_joined[:, :, positions:], grad_kernel, grad_bias, grad_joined[:, :, :positions]


def conv1d_update(inputs, state, kernel, bias=None, data_format="channels_last", dilation=1, state_indices=None):
    """``(outputs, new_state)`` of the decode step; ``state`` (slots, ...) is not modified.

    ``inputs`` is ``(batch, C)`` (one step) or ``(batch, T, C)`` / ``(batch, C, T)``.  Row ``b``
    continues slot ``state_indices[b]`` (default ``b``) with :func:`conv1d_with_state`; a negative
    index gives zero outputs and changes no slot.
    """
    axis = _along_length(data_format)
    inputs = np.asarray(inputs, dtype=np.float64)
    one_step = inputs.ndim == 2
    if one_step:
        inputs = np.expand_dims(inputs, axis)
    new_state = np.array(state, dtype=np.float64)
    indices = range(inputs.shape[0]) if state_indices is None else [int(i) for i in state_indices]
    mult = np.shape(kernel)[2]
    channels = np.shape(kernel)[1]
    out_shape = list(inputs.shape)
    out_shape[3 - axis] = channels * mult
    outputs = np.zeros(out_shape)
    for b, slot in enumerate(indices):
        if slot < 0:
            continue
        y, final = conv1d_with_state(inputs[b:b + 1], kernel, bias, new_state[slot:slot + 1], data_format, dilation)
        outputs[b] = y[0]
        new_state[slot] = final[0]
    if one_step:
        outputs = outputs[:, 0] if axis == 1 else outputs[:, :, 0]
    return outputs, new_state


def _segments(ids_row):
    """``(id, start, stop)`` of each run of equal ids >= 0 in a row."""
    runs, start = [], 0
    for t in range(1, len(ids_row) + 1):
        if t == len(ids_row) or ids_row[t] != ids_row[start]:
            if ids_row[start] >= 0:
                runs.append((ids_row[start], start, t))
            start = t
    return runs


def conv1d_packed(x, kernel, bias, ids, data_format="channels_last", dilation=1):
    """Causal convolution of each packed sequence on its own (zeros where the id is negative)."""
    x = _channels_last(np.asarray(x, dtype=np.float64), data_format)
    kernel = np.asarray(kernel, dtype=np.float64)
    y = np.zeros(x.shape[:2] + (kernel.shape[1] * kernel.shape[2],))
    for b in range(x.shape[0]):
        for _, start, stop in _segments(list(np.asarray(ids)[b])):
            y[b, start:stop] = conv1d_forward(x[b:b + 1, start:stop], kernel, bias, 1, "causal", "channels_last",
                                              dilation)[0]
    return _channels_last(y, data_format)


def conv1d_packed_gradients(grad_y, x, kernel, ids, data_format="channels_last", dilation=1):
    """``(grad_x, grad_kernel, grad_bias)`` of ``sum(conv1d_packed(...) * grad_y)``, sequence by sequence."""
    x = _channels_last(np.asarray(x, dtype=np.float64), data_format)
    grad_y = _channels_last(np.asarray(grad_y, dtype=np.float64), data_format)
    kernel = np.asarray(kernel, dtype=np.float64)
    grad_x = np.zeros_like(x)
    grad_kernel = np.zeros_like(kernel)
    grad_bias = np.zeros(grad_y.shape[2])
    for b in range(x.shape[0]):
        for _, start, stop in _segments(list(np.asarray(ids)[b])):
            gx, gk, gb = conv1d_gradients(grad_y[b:b + 1, start:stop], x[b:b + 1, start:stop], kernel, 1, "causal",
                                          "channels_last", dilation)
            grad_x[b, start:stop] = gx[0]
            grad_kernel += gk
            grad_bias += gb
    return _channels_last(grad_x, data_format), grad_kernel, grad_bias


def separable_forward(x, depthwise_kernel, pointwise_kernel, bias=None, stride=1, padding="valid",
                      data_format="channels_last", dilation=1):
    """Depthwise (no bias), then ``out[.., f] = sum_k z[.., k] * pointwise[0, k, f]`` by a loop over k, + bias."""
    z = _channels_last(conv1d_forward(x, depthwise_kernel, None, stride, padding, data_format, dilation), data_format)
    pointwise = np.asarray(pointwise_kernel, dtype=np.float64)[0]
    out = np.zeros(z.shape[:2] + (pointwise.shape[1],))
    for k in range(pointwise.shape[0]):
        out += z[:, :, k : k + 1] * pointwise[k][None, None, :]
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float64)
    return _channels_last(out, data_format)


def separable_gradients(grad_y, x, depthwise_kernel, pointwise_kernel, stride=1, padding="valid",
                        data_format="channels_last", dilation=1):
    """``(grad_x, grad_depthwise, grad_pointwise, grad_bias)`` of ``sum(y * grad_y)`` by the chain rule."""
    z = _channels_last(conv1d_forward(x, depthwise_kernel, None, stride, padding, data_format, dilation), data_format)
    grad_y = _channels_last(np.asarray(grad_y, dtype=np.float64), data_format)
    pointwise = np.asarray(pointwise_kernel, dtype=np.float64)[0]
    grad_pointwise = np.zeros_like(pointwise)
    grad_z = np.zeros_like(z)
    for k in range(pointwise.shape[0]):
        grad_pointwise[k] = np.sum(z[:, :, k : k + 1] * grad_y, axis=(0, 1))
        grad_z[:, :, k] = np.sum(grad_y * pointwise[k][None, None, :], axis=2)
    grad_x, grad_depthwise, _ = conv1d_gradients(_channels_last(grad_z, data_format), x, depthwise_kernel, stride,
                                                  padding, data_format, dilation)
    return grad_x, grad_depthwise, grad_pointwise[None], grad_y.sum(axis=(0, 1))


# ---------------------------------------------------------------------------- building blocks
# Scalar formulas straight from the Keras documentation, evaluated one element at a time.
def _softplus(v):
    return v + math.log1p(math.exp(-v)) if v > 0 else math.log1p(math.exp(v))


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946

ACTIVATIONS = {
    "linear": lambda v: v,
    "relu": lambda v: max(v, 0.0),
    "relu6": lambda v: min(max(v, 0.0), 6.0),
    "leaky_relu": lambda v: v if v > 0 else 0.2 * v,
    "elu": lambda v: v if v > 0 else math.exp(v) - 1.0,
    "selu": lambda v: _SELU_SCALE * (v if v > 0 else _SELU_ALPHA * (math.exp(v) - 1.0)),
    "gelu": lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))),
    "sigmoid": lambda v: 1.0 / (1.0 + math.exp(-v)),
    "hard_sigmoid": lambda v: 0.0 if v <= -3 else (1.0 if v >= 3 else v / 6.0 + 0.5),
    "tanh": math.tanh,
    "silu": lambda v: v / (1.0 + math.exp(-v)),
    "hard_silu": lambda v: v * (0.0 if v <= -3 else (1.0 if v >= 3 else v / 6.0 + 0.5)),
    "softplus": _softplus,
    "softsign": lambda v: v / (1.0 + abs(v)),
    "mish": lambda v: v * math.tanh(_softplus(v)),
    "exponential": math.exp,
}
KINKS = {"relu": [0.0], "relu6": [0.0, 6.0], "leaky_relu": [0.0], "elu": [0.0], "selu": [0.0],
         "hard_sigmoid": [-3.0, 3.0], "hard_silu": [-3.0, 3.0]}


def activation(name, x):
    """The activation ``name`` applied to every element of ``x`` (float64)."""
    x = np.asarray(x, dtype=np.float64)
    return np.array([ACTIVATIONS[name](float(v)) for v in x.ravel()]).reshape(x.shape)


def norms_along(w, axis):
    """Sqrt of the sum of squares over ``axis`` (int or list), by a loop over the kept positions."""
    w = np.asarray(w, dtype=np.float64)
    axes = [axis] if isinstance(axis, int) else list(axis)
    axes = [a % w.ndim for a in axes]
    kept = [a for a in range(w.ndim) if a not in axes]
    out = np.zeros([1 if a in axes else w.shape[a] for a in range(w.ndim)])
    for index in np.ndindex(*[w.shape[a] for a in kept]):
        selector = [slice(None)] * w.ndim
        out_selector = [0] * w.ndim
        for a, i in zip(kept, index):
            selector[a] = i
            out_selector[a] = i
        total = 0.0
        for v in w[tuple(selector)].ravel():
            total += v * v
        out[tuple(out_selector)] = math.sqrt(total)
    return out


def sgd_steps(w, grads, learning_rate, momentum=0.0, nesterov=False):
    """Keras' SGD over a sequence of gradients, one element at a time in float64."""
    w = np.asarray(w, dtype=np.float64).copy()
    flat = w.ravel()
    velocity = [0.0] * flat.size
    for grad in grads:
        g = np.asarray(grad, dtype=np.float64).ravel()
        for i in range(flat.size):
            if momentum == 0:
                flat[i] -= learning_rate * g[i]
                continue
            velocity[i] = momentum * velocity[i] - learning_rate * g[i]
            flat[i] += momentum * velocity[i] - learning_rate * g[i] if nesterov else velocity[i]
    return w


def adam_steps(w, grads, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Keras' Adam over a sequence of gradients, one element at a time in float64."""
    w = np.asarray(w, dtype=np.float64).copy()
    flat = w.ravel()
    m = [0.0] * flat.size
    v = [0.0] * flat.size
    for t, grad in enumerate(grads, start=1):
        g = np.asarray(grad, dtype=np.float64).ravel()
        alpha = learning_rate * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        for i in range(flat.size):
            m[i] += (g[i] - m[i]) * (1 - beta_1)
            v[i] += (g[i] * g[i] - v[i]) * (1 - beta_2)
            flat[i] -= m[i] * alpha / (math.sqrt(v[i]) + epsilon)
    return w


# ---------------------------------------------------------------------------- 2D
def _to_channels_last_2d(array, data_format):
    return array if data_format == "channels_last" else np.moveaxis(array, 1, -1)


def _from_channels_last_2d(array, data_format):
    return array if data_format == "channels_last" else np.moveaxis(array, -1, 1)


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def _geometry_2d(x_shape, kernel_shape, stride, padding, dilation):
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    top, bottom, out_h = padding_amounts(x_shape[1], kernel_shape[0], sh, dh, padding)
    left, right, out_w = padding_amounts(x_shape[2], kernel_shape[1], sw, dw, padding)
    return (sh, sw), (dh, dw), (top, bottom, left, right), (out_h, out_w)


def conv2d_forward(x, kernel, bias=None, stride=1, padding="valid", data_format="channels_last", dilation=1):
    """``y[b, h, w, c*m + j] = sum_{i, k} xpad[b, h*sh + i*dh, w*sw + k*dw, c] * kernel[i, k, c, j]`` in float64."""
    x = _to_channels_last_2d(np.asarray(x, dtype=np.float64), data_format)
    kernel = np.asarray(kernel, dtype=np.float64)
    batch, height, width, channels = x.shape
    kh, kw, _, mult = kernel.shape
    (sh, sw), (dh, dw), (top, bottom, left, right), (out_h, out_w) = _geometry_2d(x.shape, kernel.shape, stride,
                                                                                   padding, dilation)
    y = np.zeros((batch, out_h, out_w, channels, mult))
    for i in range(kh):
        rows = _window(x, 1, *_tap_positions(i, dh, sh, out_h, top, height), out_h)
        for k in range(kw):
            window = _window(rows, 2, *_tap_positions(k, dw, sw, out_w, left, width), out_w)
            y += window[..., None] * kernel[i, k][None, None, None]
    y = y.reshape(batch, out_h, out_w, channels * mult)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return _from_channels_last_2d(y, data_format)


def conv2d_gradients(grad_y, x, kernel, stride=1, padding="valid", data_format="channels_last", dilation=1):
    """``(grad_x, grad_kernel, grad_bias)`` of ``sum(y * grad_y)``, by the chain rule of the loop above."""
    x = _to_channels_last_2d(np.asarray(x, dtype=np.float64), data_format)
    grad_y = _to_channels_last_2d(np.asarray(grad_y, dtype=np.float64), data_format)
    kernel = np.asarray(kernel, dtype=np.float64)
    batch, height, width, channels = x.shape
    kh, kw, _, mult = kernel.shape
    (sh, sw), (dh, dw), (top, bottom, left, right), (out_h, out_w) = _geometry_2d(x.shape, kernel.shape, stride,
                                                                                   padding, dilation)
    grad_y5 = grad_y.reshape(batch, out_h, out_w, channels, mult)
    grad_x = np.zeros_like(x)
    grad_kernel = np.zeros_like(kernel)
    for i in range(kh):
        row_taps = _tap_positions(i, dh, sh, out_h, top, height)
        rows = _window(x, 1, *row_taps, out_h)
        for k in range(kw):
            col_taps = _tap_positions(k, dw, sw, out_w, left, width)
            grad_window = np.sum(grad_y5 * kernel[i, k][None, None, None], axis=4)
            grad_x += _scatter(_scatter(grad_window, 2, *col_taps, width), 1, *row_taps, height)
            window = _window(rows, 2, *col_taps, out_w)
            grad_kernel[i, k] = np.sum(window[..., None] * grad_y5, axis=(0, 1, 2))
    return _from_channels_last_2d(grad_x, data_format), grad_kernel, grad_y.sum(axis=(0, 1, 2))


def separable2d_forward(x, depthwise_kernel, pointwise_kernel, bias=None, stride=1, padding="valid",
                        data_format="channels_last", dilation=1):
    """2D depthwise (no bias), then the 1x1 pointwise step by a loop over the depthwise channels, + bias."""
    z = _to_channels_last_2d(conv2d_forward(x, depthwise_kernel, None, stride, padding, data_format, dilation),
                             data_format)
    pointwise = np.asarray(pointwise_kernel, dtype=np.float64)[0, 0]
    out = np.zeros(z.shape[:3] + (pointwise.shape[1],))
    for k in range(pointwise.shape[0]):
        out += z[..., k : k + 1] * pointwise[k]
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float64)
    return _from_channels_last_2d(out, data_format)


def separable2d_gradients(grad_y, x, depthwise_kernel, pointwise_kernel, stride=1, padding="valid",
                          data_format="channels_last", dilation=1):
    """``(grad_x, grad_depthwise, grad_pointwise, grad_bias)`` of ``sum(y * grad_y)``."""
    z = _to_channels_last_2d(conv2d_forward(x, depthwise_kernel, None, stride, padding, data_format, dilation),
                             data_format)
    grad_y = _to_channels_last_2d(np.asarray(grad_y, dtype=np.float64), data_format)
    pointwise = np.asarray(pointwise_kernel, dtype=np.float64)[0, 0]
    grad_pointwise = np.zeros_like(pointwise)
    grad_z = np.zeros_like(z)
    for k in range(pointwise.shape[0]):
        grad_pointwise[k] = np.sum(z[..., k : k + 1] * grad_y, axis=(0, 1, 2))
        grad_z[..., k] = np.sum(grad_y * pointwise[k], axis=3)
    grad_x, grad_depthwise, _ = conv2d_gradients(_from_channels_last_2d(grad_z, data_format), x, depthwise_kernel,
                                                 stride, padding, data_format, dilation)
    return grad_x, grad_depthwise, grad_pointwise[None, None], grad_y.sum(axis=(0, 1, 2))
