"""The PyTorch bridge against PyTorch's own convolutions (an independent implementation) and finite differences."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
from numba_dwconv.torch import DepthwiseConv1d, DepthwiseConv2d, convert, dwconv1d, dwconv2d  # noqa: E402

ACT = {"silu": F.silu, "gelu": lambda v: F.gelu(v), "relu": F.relu, "tanh": torch.tanh}


def _conv_reference(rank, x, weight, bias, stride, padding, dilation, activation=None):
    """F.conv1d/conv2d with groups=C (and a causal left padding done by hand), then the activation."""
    conv = F.conv1d if rank == 1 else F.conv2d
    if padding == "causal":
        x = F.pad(x, ((weight.shape[-1] - 1) * dilation, 0))
        padding = 0
    with warnings.catch_warnings():  # PyTorch warns that an even 'same' extent pads a copy (it is a reference)
        warnings.simplefilter("ignore", UserWarning)
        y = conv(x, weight, bias, stride, padding, dilation, groups=x.shape[1])
    return ACT[activation](y) if activation else y


def _channels_last(x):
    return x.transpose(1, 2).contiguous().transpose(1, 2) if x.dim() == 3 else x.to(
        memory_format=torch.channels_last)


CASES_1D = [  # stride, padding, dilation, multiplier, bias, activation
    (1, 0, 1, 1, True, None),
    (1, 2, 1, 2, False, None),
    (2, 1, 1, 1, True, "silu"),
    (1, "same", 2, 1, True, "gelu"),
    (1, "valid", 1, 3, True, None),
    (1, "causal", 2, 1, False, "relu"),
    (3, 4, 2, 2, True, None),  # explicit padding that is not Keras' 'same'
    (2, 1, 1, 1, False, None),  # MobileNet's stride 2, padding 1
    (1, 9, 1, 1, True, "tanh"),  # more padding than the kernel reaches: outputs of bias alone at both ends
]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("stride,padding,dilation,mult,bias,activation", CASES_1D)
def test_dwconv1d_matches_torch_and_finite_differences(stride, padding, dilation, mult, bias, activation,
                                                       channels_last):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 17, dtype=torch.float64, generator=gen)
    x = (_channels_last(x) if channels_last else x).requires_grad_()
    w = torch.randn(3 * mult, 1, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(3 * mult, dtype=torch.float64, generator=gen, requires_grad=True) if bias else None
    args = (x, w, b, stride, padding, dilation)
    y = dwconv1d(*args, activation=activation)
    want = _conv_reference(1, *args, activation)
    torch.testing.assert_close(y, want)
    assert y.is_contiguous() != channels_last or y.shape[1] == 1  # the input's memory format is kept
    g = torch.randn(want.shape, dtype=torch.float64, generator=gen)
    got = torch.autograd.grad(y, [t for t in (x, w, b) if t is not None], g)
    ref = torch.autograd.grad(want, [t for t in (x, w, b) if t is not None], g)
    for a, r in zip(got, ref):
        torch.testing.assert_close(a, r)
    small = [t.detach()[:, :, :9].clone().requires_grad_() if t is x else t for t in (x,)]
    assert torch.autograd.gradcheck(lambda xx, ww, *bb: dwconv1d(xx, ww, bb[0] if bb else None, stride, padding,
                                                                 dilation, activation=activation),
                                    [small[0], w] + ([b] if b is not None else []))


CASES_2D = [
    ((1, 1), 1, (1, 1), 1, True, None),
    ((2, 1), 0, (1, 2), 2, False, "silu"),
    ((1, 1), "same", (2, 1), 1, True, None),
    ((2, 2), (1, 2), (1, 1), 1, True, "tanh"),
    ((2, 2), 1, (1, 1), 1, False, None),  # MobileNet's stride 2, padding 1
    ((1, 3), (4, 0), (1, 1), 2, True, None),
]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("stride,padding,dilation,mult,bias,activation", CASES_2D)
def test_dwconv2d_matches_torch_and_finite_differences(stride, padding, dilation, mult, bias, activation,
                                                       channels_last):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, generator=gen)
    x = (_channels_last(x) if channels_last else x).requires_grad_()
    w = torch.randn(3 * mult, 1, 3, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(3 * mult, dtype=torch.float64, generator=gen, requires_grad=True) if bias else None
    args = (x, w, b, stride, padding, dilation)
    y = dwconv2d(*args, activation=activation)
    want = _conv_reference(2, *args, activation)
    torch.testing.assert_close(y, want)
    if channels_last:
        assert y.is_contiguous(memory_format=torch.channels_last)
    params = [t for t in (x, w, b) if t is not None]
    assert torch.autograd.gradcheck(lambda *p: dwconv2d(p[0], p[1], p[2] if len(p) > 2 else None, stride, padding,
                                                        dilation, activation=activation), params)


@pytest.mark.parametrize("channels_last", [False, True])
def test_every_operator_passes_opcheck(channels_last):
    gen = torch.Generator().manual_seed(3)
    x1 = torch.randn(2, 4, 11, generator=gen)
    x2 = torch.randn(2, 4, 6, 5, generator=gen)
    x1, x2 = (_channels_last(x1), _channels_last(x2)) if channels_last else (x1, x2)
    w1 = torch.randn(8, 1, 3, generator=gen, requires_grad=True)
    w2 = torch.randn(4, 1, 3, 3, generator=gen, requires_grad=True)
    b = torch.randn(8, generator=gen, requires_grad=True)
    ops = torch.ops.numba_dwconv
    y1 = ops.dwconv1d(x1, w1, b, [1], "same", [], [1], "silu")
    y2 = ops.dwconv2d(x2, w2, None, [2, 1], "explicit", [1, 1, 0, 2], [1, 1], None)
    checks = [
        (ops.dwconv1d.default, (x1.requires_grad_(), w1, b, [1], "same", [], [1], "silu")),
        (ops.dwconv1d.default, (x1, w1, None, [2], "causal", [], [2], None)),
        (ops.dwconv1d.default, (x1, w1, b, [2], "explicit", [3, 3], [1], "gelu")),
        (ops.dwconv2d.default, (x2.requires_grad_(), w2, None, [2, 1], "explicit", [1, 1, 0, 2], [1, 1], None)),
        (ops.dwconv2d.default, (x2, w2, None, [1, 1], "valid", [], [1, 2], "tanh")),
        # the gradient operators have no gradient of their own (no double backward): checked without autograd
        (ops.dwconv1d_backward.default, (torch.randn_like(y1), x1.detach(), w1.detach(), b.detach(), [1], "same", [],
                                         [1], "silu")),
        (ops.dwconv2d_backward.default, (torch.randn_like(y2), x2.detach(), w2.detach(), None, [2, 1], "explicit",
                                         [1, 1, 0, 2], [1, 1], None)),
    ]
    for op, args in checks:
        torch.library.opcheck(op, args)


def test_modules_equal_the_torch_convs_and_state_dicts_load_both_ways():
    torch.manual_seed(4)
    ours = DepthwiseConv1d(6, 5, padding=2, depth_multiplier=2)
    conv = torch.nn.Conv1d(6, 12, 5, padding=2, groups=6)
    assert ours.state_dict().keys() == conv.state_dict().keys()
    assert all(ours.state_dict()[k].shape == v.shape for k, v in conv.state_dict().items())
    ours.load_state_dict(conv.state_dict())
    x = torch.randn(2, 6, 30)
    torch.testing.assert_close(ours(x), conv(x))
    conv2 = torch.nn.Conv1d(6, 12, 5, padding=2, groups=6)
    conv2.load_state_dict(ours.state_dict())
    torch.testing.assert_close(conv2(x), conv(x))
    ours2d = DepthwiseConv2d(4, (3, 5), stride=2, padding=(1, 2), bias=False)
    conv2d = torch.nn.Conv2d(4, 4, (3, 5), stride=2, padding=(1, 2), groups=4, bias=False)
    conv2d.load_state_dict(ours2d.state_dict())
    x2 = torch.randn(2, 4, 9, 12)
    torch.testing.assert_close(ours2d(x2), conv2d(x2))


def test_convert_replaces_only_depthwise_convs_and_keeps_outputs_and_gradients():
    torch.manual_seed(5)
    model = torch.nn.Sequential(
        torch.nn.Conv1d(4, 8, 1),  # pointwise: kept
        torch.nn.Conv1d(8, 8, 7, padding=3, groups=8),  # depthwise: replaced
        torch.nn.GELU(),
        torch.nn.Sequential(torch.nn.Conv1d(8, 16, 3, padding=1, groups=8, bias=False)),  # nested, m=2: replaced
        torch.nn.Conv1d(16, 16, 3, groups=2),  # grouped, not depthwise: kept
        torch.nn.Conv1d(16, 16, 3, padding=1, groups=16, padding_mode="circular"),  # circular: kept
    ).double()
    x = torch.randn(2, 4, 25, dtype=torch.float64)
    want = model(x)
    grads_want = torch.autograd.grad(want.square().sum(), list(model.parameters()))
    params = list(model.parameters())
    assert convert(model) is model
    kinds = [type(m).__name__ for m in (model[0], model[1], model[3][0], model[4], model[5])]
    assert kinds == ["Conv1d", "DepthwiseConv1d", "DepthwiseConv1d", "Conv1d", "Conv1d"]
    assert all(a is b for a, b in zip(model.parameters(), params))  # shared: optimizers keep working
    got = model(x)
    torch.testing.assert_close(got, want)
    for a, r in zip(torch.autograd.grad(got.square().sum(), list(model.parameters())), grads_want):
        torch.testing.assert_close(a, r)


def test_compiled_model_equals_eager():
    torch.manual_seed(6)
    model = torch.nn.Sequential(DepthwiseConv1d(8, 7, padding=3, activation="gelu"), torch.nn.Conv1d(8, 8, 1),
                                DepthwiseConv1d(8, 4, padding="causal"))
    x = torch.randn(2, 8, 40, requires_grad=True)
    want = model(x)
    (gx_want,) = torch.autograd.grad(want.sum(), x)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    got = compiled(x)
    (gx,) = torch.autograd.grad(got.sum(), x)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(gx, gx_want)


def test_bad_arguments_raise_clear_errors():
    x = torch.randn(2, 4, 10)
    with pytest.raises(ValueError, match="weight"):
        dwconv1d(x, torch.randn(4, 2, 3))  # groups != C
    with pytest.raises(ValueError, match="padding"):
        dwconv1d(x, torch.randn(4, 1, 3), padding="full")
    with pytest.raises(ValueError, match="strided"):
        dwconv1d(x, torch.randn(4, 1, 3), stride=2, padding="same")
    with pytest.raises(ValueError, match="stride"):
        dwconv1d(x, torch.randn(4, 1, 3), stride=0)
    with pytest.raises(ValueError, match="input"):
        dwconv2d(x, torch.randn(4, 1, 3, 3))
    with pytest.raises(TypeError):
        dwconv1d(x.numpy(), torch.randn(4, 1, 3))
    with pytest.raises(ValueError, match="groups"):
        DepthwiseConv1d.from_conv(torch.nn.Conv1d(4, 4, 3))
    with pytest.raises(TypeError, match="float"):
        dwconv1d(x.half(), torch.randn(4, 1, 3).half())
    before = x.clone()
    dwconv1d(x, torch.randn(4, 1, 3))
    assert torch.equal(x, before)


@pytest.mark.parametrize("channels_last", [False, True])
def test_requires_grad_inputs_are_not_copied(channels_last, monkeypatch):
    """The kernels read the input tensor's own memory (detached, either layout), through autograd too."""
    import numba_dwconv as nd

    x = torch.randn(1, 64, 8).transpose(1, 2) if channels_last else torch.randn(1, 8, 64)
    x.requires_grad_()
    w = torch.randn(8, 1, 3, requires_grad=True)
    seen = []
    original = nd.ops.depthwise_conv1d
    monkeypatch.setattr(nd.ops, "depthwise_conv1d", lambda inputs, *a, **k: seen.append(inputs) or original(inputs, *a,
                                                                                                              **k))
    dwconv1d(x, w, padding=1).sum().backward()
    assert len(seen) == 1 and np.shares_memory(seen[0], x.detach().numpy())
    assert seen[0].flags.c_contiguous and seen[0].shape == ((1, 64, 8) if channels_last else (1, 8, 64))


def test_float32_results_equal_the_numpy_ops():
    import numba_dwconv as nd

    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 16, 33), dtype=np.float32)
    kernel = rng.standard_normal((5, 16, 1), dtype=np.float32)
    want = nd.depthwise_conv1d(x, kernel, padding="same", data_format="channels_first")
    weight = torch.from_numpy(np.ascontiguousarray(kernel.transpose(1, 2, 0)))
    got = dwconv1d(torch.from_numpy(x), weight, padding=2)
    assert np.array_equal(got.numpy(), want)


def test_bridge_bench_rows_run():
    from numba_dwconv.bench import torch_bridge
    from numba_dwconv.bench.conv1d import QUICK_SHAPES
    from numba_dwconv.bench.conv2d import QUICK_SHAPES_2D

    lines = []
    rows = torch_bridge.module_rows(1, QUICK_SHAPES[:1], QUICK_SHAPES_2D[:1], lambda r: lines.append(r))
    assert len(rows) == 2 and rows == lines
    assert all(r["forward"] > 0 and r["forward_backward"] > 0 for r in rows)
    assert torch_bridge.training_step_row(1, 2, 64, 8)["speedup"] > 0
    tiny = torch_bridge.overhead_row(5)
    assert tiny["ours_us"] > 0 and tiny["torch_us"] > 0


def test_calls_without_autograd_skip_the_operator_and_give_the_same_results():
    from torch._subclasses.fake_tensor import FakeTensorMode

    from numba_dwconv.torch import _ops

    x = torch.randn(2, 8, 40, dtype=torch.float64)
    w = torch.randn(16, 1, 5, dtype=torch.float64)
    b = torch.randn(16, dtype=torch.float64)
    w_grad = w.clone().requires_grad_()
    assert _ops.plain_call(x, w, b) and _ops.plain_call(x, w, None)
    assert not _ops.plain_call(x, w_grad, b)
    with torch.no_grad():
        assert _ops.plain_call(x, w_grad, b)
        assert _ops.plain_call(x, torch.nn.Parameter(w), b)  # a module's weight, in inference
    assert not _ops.plain_call(x, torch.nn.Parameter(w), b)
    fake = FakeTensorMode().from_tensor(x)
    assert not _ops.plain_call(fake, w, b)

    calls = []
    original = _ops.dwconv1d_op
    _ops.dwconv1d_op = lambda *args: calls.append(1) or original(*args)
    try:
        plain = dwconv1d(x, w, b, stride=2, padding=3)
        assert not calls
        recorded = dwconv1d(x, w_grad, b, stride=2, padding=3)
        assert calls and recorded.requires_grad
    finally:
        _ops.dwconv1d_op = original
    torch.testing.assert_close(plain, _conv_reference(1, x, w, b, 2, 3, 1))
    assert torch.equal(recorded.detach(), plain)


class _OperatorLog(torch.utils._python_dispatch.TorchDispatchMode):
    """The names of the operators dispatched while active."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("rank, channels_last", [(1, False), (1, True), (2, False), (2, True)])
def test_an_eager_backward_runs_the_gradients_without_the_operators_dispatch(rank, channels_last):
    """Autograd's backward calls the operator's body (no dispatch, as plain_call): the same gradients, bit for bit."""
    from numba_dwconv.torch import _ops

    spatial = (37,) if rank == 1 else (9, 11)
    x = torch.randn(2, 6, *spatial, dtype=torch.float64)
    if channels_last:
        x = _channels_last(x)
    x.requires_grad_()
    w = torch.randn(12, 1, *(3,) * rank, dtype=torch.float64, requires_grad=True)
    b = torch.randn(12, dtype=torch.float64, requires_grad=True)
    conv, op = (dwconv1d, _ops.dwconv1d_backward_op) if rank == 1 else (dwconv2d, _ops.dwconv2d_backward_op)
    y = conv(x, w, b, stride=1, padding=1, activation="silu")
    grad = torch.randn_like(y)
    log = _OperatorLog()
    with log:
        y.backward(grad)
    assert not any("numba_dwconv" in name for name in log.names)
    want = op(grad, x.detach(), w.detach(), b.detach(), [1] * rank, "explicit", [1, 1] * rank, [1] * rank, "silu")
    for got, expected in zip((x.grad, w.grad, b.grad), want):
        assert torch.equal(got, expected) and got.stride() == expected.stride()
    if channels_last:
        assert _ops.channels_last_memory(x.grad)
    torch.testing.assert_close(x.grad, torch.autograd.grad(_conv_reference(rank, x, w, b, 1, 1, 1, "silu"), x,
                                                            grad)[0])
