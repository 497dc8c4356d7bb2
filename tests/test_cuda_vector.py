"""The 16-byte vector kernels of the 1D GPU path, against numba_dwconv.reference.

Each case first checks that the register-window kernels really run (the general kernels
are replaced by a function that fails), or, where they must not (strides; channels_last
with odd channel counts, multipliers or unaligned operands), that the general kernels do.
channels_first rows that are not whole aligned 16-byte vectors (`valid` outputs, odd
lengths, offset views) run the same kernels element by element.  Under the simulator the
launches are tiny (see ``gpu.py``), so grid-stride loops, several blocks per row and
halos crossing block boundaries all occur on small shapes.
"""

import numpy as np
import pytest
from cases import assert_close, host, make_case
from gpu import hardware_only, requires_cuda

import numba_dwconv as nd
from numba_dwconv import reference as ref

pytestmark = requires_cuda

if nd.cuda_available():
    from numba import cuda

    from numba_dwconv.cuda import conv1d, conv1d_generic


def _no_general_kernels(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the general kernels ran where the vector kernels apply")

    for name in ("conv1d_forward", "conv1d_input_grad", "conv1d_kernel_grad"):
        monkeypatch.setattr(conv1d_generic, name, refuse)


def _only_general_kernels(monkeypatch):
    monkeypatch.setattr(conv1d, "compiled", lambda key: pytest.fail(f"vector kernel {key} ran"))


def _check_all(x, kernel, bias, padding, layout, dilation, dtype, rng, stride=1):
    options = dict(strides=stride, padding=padding, data_format=layout, dilation_rate=dilation)
    y = nd.depthwise_conv1d(cuda.to_device(x), cuda.to_device(kernel), cuda.to_device(bias), **options)
    assert_close(y, ref.conv1d_forward(x, kernel, bias, stride, padding, layout, dilation), dtype)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    want = ref.conv1d_gradients(grad_y, x, kernel, stride, padding, layout, dilation)
    grads = nd.depthwise_conv1d_backward(cuda.to_device(grad_y), cuda.to_device(x), cuda.to_device(kernel),
                                         **options)
    for got, expected in zip(grads, want):
        assert got.dtype == dtype
        assert_close(got, expected, dtype)
    length = x.shape[1] if layout == "channels_last" else x.shape[2]
    grad_x = nd.depthwise_conv1d_input_grad(cuda.to_device(grad_y), cuda.to_device(kernel), length, **options)
    assert_close(grad_x, want[0], dtype)
    grad_k, grad_b = nd.depthwise_conv1d_kernel_grad(cuda.to_device(grad_y), cuda.to_device(x), kernel.shape[0],
                                                     **options)
    assert_close(grad_k, want[1], dtype)
    assert_close(grad_b, want[2], dtype)


FIRST = [  # (length, taps, dilation, padding, multiplier, dtype): rows of whole 16-byte vectors, and not
    (16, 3, 1, "same", 1, np.float32), (24, 4, 2, "causal", 2, np.float32), (16, 9, 1, "same", 1, np.float32),
    (20, 5, 1, "valid", 1, np.float32), (12, 2, 3, "same", 3, np.float64), (16, 4, 1, "causal", 1, np.float16),
    (32, 7, 1, "same", 2, np.float16), (8, 1, 1, "valid", 1, np.float32),
    (16, 3, 1, "valid", 1, np.float32), (15, 4, 1, "causal", 1, np.float32), (13, 3, 2, "same", 2, np.float16),
]


@pytest.mark.parametrize(("length", "taps", "dilation", "padding", "mult", "dtype"), FIRST)
def test_channels_first_vector_path(monkeypatch, length, taps, dilation, padding, mult, dtype):
    _no_general_kernels(monkeypatch)
    rng = np.random.default_rng(length * taps + dilation)
    x, kernel, bias = make_case(rng, 2, length, 3, taps, mult, "channels_first", dtype)
    _check_all(x, kernel, bias, padding, "channels_first", dilation, dtype, rng)


LAST = [  # (channels, taps, dilation, padding, dtype): channels are multiples of the vector width
    (8, 3, 1, "same", np.float32), (4, 4, 2, "causal", np.float32), (8, 7, 1, "valid", np.float32),
    (16, 3, 1, "same", np.float16), (6, 2, 2, "same", np.float64), (4, 9, 1, "same", np.float32),
]


@pytest.mark.parametrize(("channels", "taps", "dilation", "padding", "dtype"), LAST)
def test_channels_last_vector_path(monkeypatch, channels, taps, dilation, padding, dtype):
    _no_general_kernels(monkeypatch)
    rng = np.random.default_rng(channels * taps + dilation)
    x, kernel, bias = make_case(rng, 2, 13, channels, taps, 1, "channels_last", dtype)
    _check_all(x, kernel, bias, padding, "channels_last", dilation, dtype, rng)


@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
@pytest.mark.parametrize("case", ["odd length or channels", "stride 2", "multiplier (channels_last)", "unaligned view"])
def test_shapes_off_the_vector_layout(monkeypatch, layout, case):
    rng = np.random.default_rng(3)
    length, channels, mult, stride = (14, 4, 1, 1) if layout == "channels_last" else (16, 3, 1, 1)
    if case == "odd length or channels":
        length, channels = (14, 5) if layout == "channels_last" else (15, 3)
    elif case == "stride 2":
        stride = 2
    elif case == "multiplier (channels_last)":
        mult = 2
    x, kernel, bias = make_case(rng, 2, length, channels, 3, mult, layout, np.float32)
    if layout == "channels_first" and case != "stride 2":
        _no_general_kernels(monkeypatch)  # channels_first: any multiplier; odd or unaligned rows element-wise
    else:
        _only_general_kernels(monkeypatch)
    if case != "unaligned view":
        _check_all(x, kernel, bias, "same", layout, 1, np.float32, rng, stride)
        return
    # a C-contiguous device view starting one element into its buffer: not 16-byte aligned
    flat = cuda.to_device(np.concatenate([[0.0], x.ravel()]).astype(np.float32))
    view = flat[1:].reshape(x.shape)
    y = nd.depthwise_conv1d(view, kernel, bias, padding="same", data_format=layout)
    assert_close(y, ref.conv1d_forward(x, kernel, bias, 1, "same", layout), np.float32)
    grad_y = rng.standard_normal(y.shape).astype(np.float32)
    grads = nd.depthwise_conv1d_backward(grad_y, view, kernel, padding="same", data_format=layout)
    for got, want in zip(grads, ref.conv1d_gradients(grad_y, x, kernel, 1, "same", layout)):
        assert_close(got, want, np.float32)


@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
def test_fused_backward_is_deterministic(monkeypatch, layout):
    _no_general_kernels(monkeypatch)
    rng = np.random.default_rng(4)
    x, kernel, _ = make_case(rng, 3, 40, 8, 4, 1, layout, np.float32)
    grad_y = rng.standard_normal(x.shape).astype(np.float32)
    runs = [nd.depthwise_conv1d_backward(grad_y, x, kernel, padding="same", data_format=layout, device="cuda")
            for _ in range(2)]
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
def test_float16_edge_values(monkeypatch, layout):
    """Largest normal, subnormals, signed zeros and infinity in float16 data, accumulated in float32."""
    _no_general_kernels(monkeypatch)
    values = np.array([65504, -65504, 6e-8, -6e-8, 0.0, -0.0, 1e-4, 2.0, np.inf, 3.0, -1.0, 0.5], np.float16)
    x = np.resize(values, (1, 16, 8)).astype(np.float16)
    if layout == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 2, 1))
    kernel = np.full((3, 8, 1), 0.25, np.float16)
    with np.errstate(invalid="ignore", over="ignore"):
        y = host(nd.depthwise_conv1d(x, kernel, None, 1, "same", layout, device="cuda"))
        want = ref.conv1d_forward(x.astype(np.float32), kernel.astype(np.float32), None, 1, "same",
                                  layout).astype(np.float16)
    np.testing.assert_array_equal(np.isfinite(y), np.isfinite(want))
    np.testing.assert_allclose(y[np.isfinite(want)].astype(np.float32), want[np.isfinite(want)].astype(np.float32),
                               rtol=2e-3, atol=1e-7)


# (the simulator runs kernels in other threads, where np.errstate does not reach: 0 * inf warns there)
@pytest.mark.filterwarnings("ignore:.*invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
def test_padding_rule_inside_the_vector_kernels(monkeypatch, layout):
    _no_general_kernels(monkeypatch)
    rng = np.random.default_rng(5)
    x, kernel, _ = make_case(rng, 2, 16, 4, 3, 1, layout, np.float64)
    kernel[0, 1, 0] = np.inf
    grad_y = rng.standard_normal(x.shape)
    grad_y[(0, 0, 2) if layout == "channels_last" else (0, 2, 0)] = np.nan
    with np.errstate(invalid="ignore"):
        y = nd.depthwise_conv1d(x, kernel, padding="same", data_format=layout, device="cuda")
        np.testing.assert_allclose(y, ref.conv1d_forward(x, kernel, None, 1, "same", layout), equal_nan=True)
        grads = nd.depthwise_conv1d_backward(grad_y, x, kernel, padding="same", data_format=layout, device="cuda")
        for got, want in zip(grads, ref.conv1d_gradients(grad_y, x, kernel, 1, "same", layout)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
def test_bfloat16_storage_in_the_vector_kernels(layout):
    """bfloat16 (raw uint16 bits) through the forward kernel: widened exactly, summed in float32, rounded once."""
    from numba_dwconv import _geometry
    from numba_dwconv.cuda import vector
    from numba_dwconv.cuda.launch import buffer

    rng = np.random.default_rng(6)
    x, kernel, bias = make_case(rng, 2, 16, 8, 3, 1, layout, np.float32)
    bits = [vector.bf16_bits_from_f32(a) for a in (x, kernel, bias)]
    x16, k16, b16 = (vector.f32_from_bf16_bits(b) for b in bits)
    problem = _geometry.conv1d_problem(x.shape, kernel.shape, 1, "same", layout, 1, np.float32)
    key = conv1d.vector_key("forward", problem, storage="bfloat16")
    operands = [cuda.to_device(a) for a in (*bits, np.zeros(problem.output_shape, np.uint16))]
    grid, block, args, _ = conv1d._plan(problem, key, conv1d.VECTOR)
    conv1d.compiled(key).launch(grid, block, 0, 0, tuple(buffer(a) for a in operands) + args)
    want = ref.conv1d_forward(x16, k16, b16, 1, "same", layout).astype(np.float32)
    got = vector.f32_from_bf16_bits(operands[-1].copy_to_host())
    np.testing.assert_allclose(got, want, rtol=2**-8, atol=2**-8 * np.abs(want).max())


@hardware_only
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
def test_full_size_launches_on_a_stream(monkeypatch, layout, dtype):
    """Real launch geometry (many blocks, grid-stride loops) on a non-default stream, against the reference."""
    _no_general_kernels(monkeypatch)
    rng = np.random.default_rng(7)
    x, kernel, bias = make_case(rng, 3, 4096, 96, 4, 1, layout, dtype)
    stream = cuda.stream()
    options = dict(padding="causal", data_format=layout, stream=stream)
    dx, dk, db = (cuda.to_device(a, stream=stream) for a in (x, kernel, bias))
    y = nd.depthwise_conv1d(dx, dk, db, **options)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    grads = nd.depthwise_conv1d_backward(cuda.to_device(grad_y, stream=stream), dx, dk, **options)
    stream.synchronize()
    assert_close(y, ref.conv1d_forward(x, kernel, bias, 1, "causal", layout), dtype)
    for got, want in zip(grads, ref.conv1d_gradients(grad_y, x, kernel, 1, "causal", layout)):
        assert_close(got, want, dtype)


def test_the_public_shapes_take_the_register_window_kernels():
    """Which kernels the bench report's shapes run (a change that drops them to the general path fails here)."""
    from numba_dwconv import _geometry
    from numba_dwconv.bench.conv1d import PUBLIC_SHAPES

    general = []
    for shape in PUBLIC_SHAPES:
        for layout in ("channels_last", "channels_first"):
            for dtype in (np.float32, np.float16):
                dims = (shape.batch, shape.length, shape.channels)
                if layout == "channels_first":
                    dims = (dims[0], dims[2], dims[1])
                problem = _geometry.conv1d_problem(dims, (shape.kernel_size, shape.channels, shape.multiplier), 1,
                                                   shape.padding, layout, 1, dtype)
                for kind in ("forward", "backward"):
                    if conv1d.vector_key(kind, problem, config=conv1d.VectorLaunch()) is None:
                        general.append((shape.kernel_size, layout, np.dtype(dtype).name, kind))
    # channels_last backward keeps (K + 1) x vector-width sums per thread in registers: K <= 9 (fp32), 4 (fp16);
    # the channels_last vector kernels take depth multiplier 1 only (the K5 m2 shape runs the general ones)
    multiplier = [(5, "channels_last", dtype, kind) for dtype in ("float16", "float32")
                  for kind in ("backward", "forward")]
    assert sorted(general) == sorted([*multiplier, (7, "channels_last", "float16", "backward"),
                                      (31, "channels_last", "float16", "backward"),
                                      (31, "channels_last", "float32", "backward")])


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_channels_last_long_kernel_reads_its_weights_per_row(monkeypatch, dtype):
    """Taps x vector width above the register budget: weights read as vectors per tap (forward)."""
    monkeypatch.setattr(conv1d_generic, "conv1d_forward", lambda *a, **k: pytest.fail("general forward ran"))
    rng = np.random.default_rng(8)
    x, kernel, bias = make_case(rng, 2, 21, 8, 17, 1, "channels_last", dtype)
    y = nd.depthwise_conv1d(cuda.to_device(x), cuda.to_device(kernel), cuda.to_device(bias), padding="same")
    assert_close(y, ref.conv1d_forward(x, kernel, bias, 1, "same"), dtype)
