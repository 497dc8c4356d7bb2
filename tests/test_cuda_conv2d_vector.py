"""The 16-byte vector kernels of the 2D GPU path, against numba_dwconv.reference.

Each case first checks that the vector kernels really run (the general kernels are replaced
by a function that fails), or, where they must not (channels_last with odd channel counts,
multipliers or unaligned operands; strided channels_first backward), that the general
kernels do.  Under the simulator the launches are tiny (see ``gpu.py``): several channel
groups and row chunks per problem, grid-stride loops, and windows whose halo crosses block
edges in both axes all occur on small images.
"""

import numpy as np
import pytest
from cases import assert_close
from gpu import hardware_only, requires_cuda
from test_conv2d import check_all_2d, make_case2d

import numba_dwconv as nd
from numba_dwconv import reference as ref

pytestmark = requires_cuda

if nd.cuda_available():
    from numba import cuda

    from numba_dwconv.cuda import conv2d, conv2d_generic


def _no_general_kernels(monkeypatch, backward=True):
    def refuse(*args, **kwargs):
        raise AssertionError("the general kernels ran where the vector kernels apply")

    for name in ("conv2d_forward",) + (("conv2d_input_grad", "conv2d_kernel_grad") if backward else ()):
        monkeypatch.setattr(conv2d_generic, name, refuse)


def _only_general_kernels(monkeypatch):
    monkeypatch.setattr(conv2d, "compiled", lambda key: pytest.fail(f"vector kernel {key} ran"))


def _check(x, kernel, bias, stride, padding, layout, dilation, dtype, seed):
    """Forward, fused backward and each gradient alone (``check_all_2d`` on the GPU)."""
    check_all_2d(x, kernel, bias, stride, padding, layout, dilation, dtype, np.random.default_rng(seed),
                 device="cuda")


LAST = [  # (H, W, channels, kernel, stride, dilation, padding, dtype); channels a multiple of the vector width
    (5, 6, 8, (3, 3), 1, 1, "same", np.float32),  # several channel groups and row chunks
    (7, 6, 8, (3, 2), 2, 1, "same", np.float32),  # stride 2 both axes, even kernel width
    (7, 9, 4, (2, 3), (1, 2), (2, 1), "valid", np.float32),  # stride with dilation
    (4, 5, 4, (3, 3), (2, 3), 1, "same", np.float32),  # stride 3 (a run of 3 columns)
    (7, 7, 4, (3, 3), 2, 1, "same", np.float32),  # stride 2 with an odd left pad (the input gradient's phase)
    (6, 8, 4, (5, 5), (1, 2), 1, "same", np.float32),  # stride 2, left pad 1
    (2, 3, 8, (5, 5), 1, 1, "same", np.float32),  # image smaller than the kernel
    (6, 11, 4, (5, 3), 1, (1, 3), "same", np.float32),  # wide dilated windows
    (5, 5, 16, (3, 3), 1, 1, "same", np.float16),
    (5, 4, 4, (3, 3), 2, 1, "same", np.float64),
    (9, 10, 4, (9, 9), 1, 1, "same", np.float32),  # taps beyond the registers: weights a row at a time
]


@pytest.mark.parametrize(("height", "width", "channels", "ksize", "stride", "dilation", "padding", "dtype"), LAST)
def test_channels_last_vector_path(monkeypatch, height, width, channels, ksize, stride, dilation, padding, dtype):
    problem_ok = conv2d.vector_key("backward", _problem((2, height, width, channels), ksize, 1, stride, padding,
                                                        "channels_last", dilation, dtype), config=conv2d.VECTOR)
    _no_general_kernels(monkeypatch, backward=problem_ok is not None)
    x, kernel, bias = make_case2d(np.random.default_rng(height * width), 2, height, width, channels, ksize, 1,
                                  "channels_last", dtype)
    _check(x, kernel, bias, stride, padding, "channels_last", dilation, dtype, channels)


FIRST = [  # (H, W, channels, kernel, stride, dilation, padding, multiplier, dtype)
    (5, 8, 3, (3, 3), 1, 1, "same", 1, np.float32),  # rows of whole vectors
    (6, 7, 2, (3, 2), 1, (1, 2), "same", 2, np.float32),  # odd rows: element by element; multiplier 2
    (6, 16, 2, (3, 3), 1, 1, "same", 1, np.float16),
    (7, 12, 2, (3, 3), 1, 1, "valid", 1, np.float32),  # valid: output rows of 10, element-wise stores
    (4, 4, 2, (5, 5), 1, 1, "same", 1, np.float64),  # image smaller than the kernel
    (11, 12, 1, (9, 9), 1, 1, "same", 1, np.float32),  # 81 taps: weights a row at a time (forward)
    (8, 8, 2, (7, 7), 1, 1, "same", 1, np.float32),  # ConvNeXt's 7x7: 50 sums per thread (backward)
    (5, 8, 1, (3, 3), 1, 1, "same", 4, np.float32),  # multiplier 4: 40 sums
]


@pytest.mark.parametrize(("height", "width", "channels", "ksize", "stride", "dilation", "padding", "mult", "dtype"),
                         FIRST)
def test_channels_first_vector_path(monkeypatch, height, width, channels, ksize, stride, dilation, padding, mult,
                                    dtype):
    problem = _problem((2, channels, height, width), ksize, mult, stride, padding, "channels_first", dilation, dtype)
    _no_general_kernels(monkeypatch, backward=conv2d.vector_key("backward", problem, config=conv2d.VECTOR)
                        is not None)
    x, kernel, bias = make_case2d(np.random.default_rng(height * width + mult), 2, height, width, channels, ksize,
                                  mult, "channels_first", dtype)
    _check(x, kernel, bias, stride, padding, "channels_first", dilation, dtype, channels)


@pytest.mark.parametrize(("width", "ksize", "stride", "dilation", "dtype"), [
    (16, (3, 4), 2, 1, np.float16),  # rows of vectors, left pad 1 (the input gradient's phase)
    (16, (3, 3), (2, 2), 1, np.float32),  # left pad 0
    (15, (2, 3), (1, 2), (2, 2), np.float32),  # odd rows: element by element, dilation
    (16, (3, 5), (1, 4), 1, np.float32),  # stride = vector width
])
def test_channels_first_strided_backward_runs_vectors(monkeypatch, width, ksize, stride, dilation, dtype):
    _no_general_kernels(monkeypatch)
    x, kernel, bias = make_case2d(np.random.default_rng(width), 2, 7, width, 2, ksize, 1, "channels_first", dtype)
    _check(x, kernel, bias, stride, "same", "channels_first", dilation, dtype, 1)


def test_channels_first_stride_not_dividing_the_vector_runs_the_general_backward(monkeypatch):
    _no_general_kernels(monkeypatch, backward=False)
    x, kernel, bias = make_case2d(np.random.default_rng(1), 2, 7, 16, 2, (3, 3), 1, "channels_first", np.float32)
    problem = _problem(x.shape, (3, 3), 1, 3, "same", "channels_first", 1, np.float32)
    assert conv2d.vector_key("forward", problem) is not None and conv2d.vector_key("backward", problem) is None
    _check(x, kernel, bias, 3, "same", "channels_first", 1, np.float32, 1)


def _problem(shape, ksize, mult, stride, padding, layout, dilation, dtype):
    from numba_dwconv import _geometry

    channels = shape[-1] if layout == "channels_last" else shape[1]
    return _geometry.conv2d_problem(shape, (*ksize, channels, mult), stride, padding, layout, dilation, dtype)


@pytest.mark.parametrize("case", ["channels not a multiple of the width", "multiplier 2", "unaligned view"])
def test_channels_last_off_the_vector_layout_runs_the_general_kernels(monkeypatch, case):
    rng = np.random.default_rng(2)
    channels, mult = (6, 1) if case.startswith("channels") else (4, 2) if case == "multiplier 2" else (4, 1)
    x, kernel, bias = make_case2d(rng, 2, 5, 6, channels, (3, 3), mult, "channels_last", np.float32)
    _only_general_kernels(monkeypatch)
    if case != "unaligned view":
        _check(x, kernel, bias, 1, "same", "channels_last", 1, np.float32, 2)
        return
    flat = cuda.to_device(np.concatenate([[0.0], x.ravel()]).astype(np.float32))
    view = flat[1:].reshape(x.shape)  # C-contiguous, one element into its buffer: not 16-byte aligned
    y = nd.depthwise_conv2d(view, kernel, bias, padding="same")
    assert_close(y, ref.conv2d_forward(x, kernel, bias, 1, "same"), np.float32)


def test_channels_first_unaligned_view_moves_element_by_element(monkeypatch):
    _no_general_kernels(monkeypatch)
    rng = np.random.default_rng(3)
    x, kernel, bias = make_case2d(rng, 2, 5, 8, 2, (3, 3), 1, "channels_first", np.float32)
    view = cuda.to_device(np.concatenate([[0.0], x.ravel()]).astype(np.float32))[1:].reshape(x.shape)
    y = nd.depthwise_conv2d(view, kernel, bias, padding="same", data_format="channels_first")
    assert_close(y, ref.conv2d_forward(x, kernel, bias, 1, "same", "channels_first"), np.float32)
    grad_y = rng.standard_normal(y.shape).astype(np.float32)
    grads = nd.depthwise_conv2d_backward(grad_y, view, kernel, padding="same", data_format="channels_first")
    for got, want in zip(grads, ref.conv2d_gradients(grad_y, x, kernel, 1, "same", "channels_first")):
        assert_close(got, want, np.float32)


@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
def test_fused_backward_is_deterministic(monkeypatch, layout):
    _no_general_kernels(monkeypatch)
    rng = np.random.default_rng(4)
    x, kernel, _ = make_case2d(rng, 3, 6, 8, 4, (3, 3), 1, layout, np.float32)
    grad_y = rng.standard_normal(x.shape).astype(np.float32)
    runs = [nd.depthwise_conv2d_backward(grad_y, x, kernel, padding="same", data_format=layout, device="cuda")
            for _ in range(2)]
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


# (the simulator runs kernels in other threads, where np.errstate does not reach: 0 * inf warns there)
@pytest.mark.filterwarnings("ignore:.*invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("general", [False, True])
@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
def test_padding_rule_inside_the_kernels(monkeypatch, layout, general):
    """An infinite weight reaching padding gives NaN (forward) and a NaN gradient meets padding (kernel grad)."""
    if general:  # the general kernels on the same shapes
        monkeypatch.setattr(conv2d, "_vector_forward", lambda *a, **k: None)
        monkeypatch.setattr(conv2d, "_vector_backward", lambda *a, **k: None)
    else:
        _no_general_kernels(monkeypatch)
    rng = np.random.default_rng(5)
    x, kernel, _ = make_case2d(rng, 2, 5, 8, 4, (3, 3), 1, layout, np.float64)
    kernel[0, 1, 0, 0] = np.inf
    grad_y = rng.standard_normal(x.shape)
    grad_y[(0, 0, 2, 1) if layout == "channels_last" else (0, 1, 0, 2)] = np.nan
    options = dict(padding="same", data_format=layout, device="cuda")
    with np.errstate(invalid="ignore"):
        y = nd.depthwise_conv2d(x, kernel, **options)
        np.testing.assert_allclose(y, ref.conv2d_forward(x, kernel, None, 1, "same", layout), equal_nan=True)
        grads = nd.depthwise_conv2d_backward(grad_y, x, kernel, **options)
        for got, want in zip(grads, ref.conv2d_gradients(grad_y, x, kernel, 1, "same", layout)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)


MOBILENET = [(16, 56, 56, 128, 3, 1), (16, 112, 112, 32, 3, 1), (16, 56, 56, 256, 3, 2), (8, 28, 28, 512, 5, 1)]


def test_the_mobilenet_shapes_take_the_vector_kernels():
    """Which kernels the issue's MobileNet shapes run (a change that drops one to the general path fails here)."""
    general = []
    for batch, height, width, channels, size, stride in MOBILENET:
        for layout in ("channels_last", "channels_first"):
            for dtype in (np.float32, np.float16):
                shape = (batch, height, width, channels) if layout == "channels_last" else (batch, channels, height,
                                                                                          width)
                problem = _problem(shape, (size, size), 1, stride, "same", layout, 1, dtype)
                for kind in ("forward", "backward"):
                    if conv2d.vector_key(kind, problem, config=conv2d.Vector2DLaunch()) is None:
                        general.append((height, size, stride, layout, np.dtype(dtype).name, kind))
    assert general == []


@hardware_only
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
def test_full_size_launches_on_a_stream(monkeypatch, layout, dtype):
    """Real launch geometry (many blocks, grid-stride loops) on a non-default stream, against the reference."""
    _no_general_kernels(monkeypatch)
    rng = np.random.default_rng(7)
    x, kernel, bias = make_case2d(rng, 4, 56, 56, 64, (3, 3), 1, layout, dtype)
    stream = cuda.stream()
    options = dict(padding="same", data_format=layout, stream=stream)
    dx, dk, db = (cuda.to_device(a, stream=stream) for a in (x, kernel, bias))
    y = nd.depthwise_conv2d(dx, dk, db, **options)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    grads = nd.depthwise_conv2d_backward(cuda.to_device(grad_y, stream=stream), dx, dk, **options)
    stream.synchronize()
    assert_close(y, ref.conv2d_forward(x, kernel, bias, 1, "same", layout), dtype)
    for got, want in zip(grads, ref.conv2d_gradients(grad_y, x, kernel, 1, "same", layout)):
        assert_close(got, want, dtype)


def test_bench_report_gpu_rows(monkeypatch):
    """The bench report's 2D GPU rows on a tiny shape: both dtypes and layouts, the float32 rows checked."""
    from numba_dwconv import reference
    from numba_dwconv.bench import conv2d as bench2d
    from numba_dwconv.bench.report import TOLERANCE
    from numba_dwconv.bench.timing import best_time

    monkeypatch.setattr(bench2d, "gpu_time", lambda func, repeat, calls=1: best_time(func, 1))  # (no CUDA events)
    rows = bench2d.run_cuda_2d([bench2d.Shape2D(1, 6, 6, 8, 3, 2)], 1, 1e9, False, reference)
    assert [(r["dtype"], r["layout"]) for r in rows] == [(d, lay) for d in ("float32", "float16")
                                                         for lay in ("channels_last", "channels_first")]
    assert all(r["max_rel_error"] <= TOLERANCE for r in rows if r["dtype"] == "float32")
    assert all(r["forward_ms"] > 0 and r["backward_roofline_pct"] > 0 for r in rows)
