"""Convolutions whose strides or dilations exceed the input, run as small ``valid`` ones.

:func:`numba_dwconv._geometry.reduce_problem` decides the reduced geometry; this
module moves the operands to it and the gradients back, on the host (such calls
are rare and small: the reduced input is bounded by the data, whatever the
stride or dilation):

* the kernel keeps its live taps only;
* the input becomes the window of the zero-padded input that the live taps read
  (cropped where the window starts inside the input, zero-filled where it covers
  padding);
* the input gradient of that window is cropped back onto the input, the kernel
  gradient of the live taps is placed in a zero kernel gradient.
"""

from __future__ import annotations

import numpy as np

from . import _geometry as geo
from .dispatch import to_host as host


class Reduction:
    """The reduced form of ``problem`` on ``place`` (a no-op when no axis needs it).

    Attributes
    ----------
    problem
        The problem as given (for shapes of results and for the padding rule).
    live
        The problem the kernels run: ``problem`` itself, or its reduced form.
    """

    def __init__(self, place, problem):
        self.place = place
        self.problem = problem
        self.live, self.taps, self.offsets = geo.reduce_problem(problem)

    def _to_target(self, array):
        return array if self.place.target == "cpu" else self.place.operand(array, array.dtype)

    def _windows(self):
        """Index tuples ``(original, reduced)`` of the positions the input and the reduced input share."""
        rank = len(self.offsets)
        first_axis = 1 if self.problem.channels_last else 2
        original = [slice(None)] * (rank + 2)
        reduced = [slice(None)] * (rank + 2)
        full_shape, live_shape = self.problem.input_shape, self.live.input_shape
        for a, offset in enumerate(self.offsets):
            ax = first_axis + a
            lo, hi = max(0, offset), min(live_shape[ax], full_shape[ax] + offset)
            hi = max(lo, hi)
            reduced[ax] = slice(lo, hi)
            original[ax] = slice(lo - offset, hi - offset)
        return tuple(original), tuple(reduced)

    def kernel(self, kernel):
        """The kernel operand of the live taps."""
        if self.taps is not None:
            kernel = host(kernel)[self.taps]
        return self.place.operand(kernel, self.problem.dtype)

    def inputs(self, inputs):
        """The inputs operand: the window of the zero-padded inputs that the reduced problem reads."""
        if self.taps is None:
            return self.place.operand(inputs, self.problem.dtype)
        window = np.zeros(self.live.input_shape, self.problem.dtype)
        original, reduced = self._windows()
        window[reduced] = host(inputs)[original]
        return self.place.operand(window, self.problem.dtype)

    def grad_inputs(self, grad_window):
        """The input gradient of the original inputs from the reduced one's."""
        if self.taps is None:
            return grad_window
        grad = np.zeros(self.problem.input_shape, self.problem.dtype)
        original, reduced = self._windows()
        grad[original] = host(grad_window)[reduced]
        return self._to_target(grad)

    def grad_kernel(self, grad_live):
        """The kernel gradient in the whole kernel's shape (zeros for the dead taps)."""
        if self.taps is None:
            return grad_live
        grad = np.zeros(self.problem.kernel_shape, self.problem.dtype)
        grad[self.taps] = host(grad_live)
        return self._to_target(grad)
