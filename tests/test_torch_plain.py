"""A module's repeated plain CPU forward (numba_dwconv.torch._plain): prepared launches, same bits, no stale state."""

import copy
import pickle
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
from numba_dwconv.cpu import conv2d_prepared  # noqa: E402
from numba_dwconv.torch import DepthwiseConv2d, _plain  # noqa: E402


@pytest.fixture
def plan_calls(monkeypatch):
    """The number of forwards run through a prepared plan (ForwardPlan.__call__) while the test runs."""
    calls = []
    real = conv2d_prepared.ForwardPlan.__call__
    monkeypatch.setattr(conv2d_prepared.ForwardPlan, "__call__", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def _reference(module, x):
    """PyTorch's own convolution with the module's parameters and options (an independent implementation)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return F.conv2d(x, module.weight, module.bias, module.stride, module._keras_padding, module.dilation,
                        groups=x.shape[1])


def _general(module, x):
    """The module's general path (no prepared forward), for bit-for-bit comparisons."""
    make = _plain.PlainForward.__dict__["make"]
    _plain.PlainForward.make = classmethod(lambda cls, m, x: None)
    module._plain = None
    try:
        return module(x)
    finally:
        _plain.PlainForward.make = make


def _channels_last_at(shape, offset_elements, dtype, gen):
    """An (N, C, H, W) tensor stored channels last, ``offset_elements`` into its storage (its alignment)."""
    n, c, h, w = shape
    flat = torch.randn(n * h * w * c + offset_elements, dtype=dtype, generator=gen)
    return flat[offset_elements:].view(n, h, w, c).permute(0, 3, 1, 2)


CASES = [  # channels, kernel, stride, padding, dilation, bias, dtype, offset
    (16, 3, 1, 1, 1, True, torch.float32, 0),
    (16, 3, 2, 1, 1, False, torch.float32, 0),
    (24, 3, 1, "same", 2, True, torch.float64, 0),
    (8, (3, 5), (2, 1), (0, 2), 1, True, torch.float32, 0),
    (272, 5, 1, 2, 1, True, torch.float32, 0),  # 25 taps, many channels: the plan depends on the alignment
    (272, 5, 1, 2, 1, True, torch.float32, 4),
    (16, 2, 1, "valid", 1, False, torch.float64, 0),
]


@pytest.mark.parametrize("channels, kernel, stride, padding, dilation, bias, dtype, offset", CASES)
def test_repeated_plain_calls_run_the_prepared_launch_with_the_general_paths_bits(
        plan_calls, channels, kernel, stride, padding, dilation, bias, dtype, offset):
    gen = torch.Generator().manual_seed(channels)
    module = DepthwiseConv2d(channels, kernel, stride, padding, dilation, bias=bias, dtype=dtype)
    x = _channels_last_at((2, channels, 11, 9), offset, dtype, gen)
    with torch.no_grad():
        first = module(x)  # the general path, which prepares the next calls
        assert not plan_calls and module._plain is not None
        second = module(x)
        third = module(x)
        assert len(plan_calls) == 2
        copied = module(x.clone(memory_format=torch.channels_last))  # (elsewhere: maybe prepared again)
        general = _general(module, x)
    want = _reference(module, x)
    torch.testing.assert_close(second, want)
    for y in (first, third, copied):
        assert torch.equal(y, second)
    assert torch.equal(general, second)
    assert second.is_contiguous(memory_format=torch.channels_last) and second.shape == want.shape


def test_an_input_at_another_alignment_is_prepared_again_when_the_plan_depends_on_it(plan_calls):
    gen = torch.Generator().manual_seed(0)
    module = DepthwiseConv2d(272, 5, padding=2)
    x0 = _channels_last_at((1, 272, 8, 8), 0, torch.float32, gen)
    x4 = _channels_last_at((1, 272, 8, 8), 4, torch.float32, gen)  # 16 bytes off a line
    with torch.no_grad():
        module(x0)
        plain, mismatch = module._plain, _plain.MISMATCH
        assert plain.run(module, x4) is mismatch
        assert plain.run(module, x0) is not mismatch
        y4 = module(x4)
        assert module._plain.plan.alignment == 16
        torch.testing.assert_close(y4, _reference(module, x4))
        y4_again = module(x4)
    assert len(plan_calls) == 2 and torch.equal(y4_again, y4)


def test_the_weight_is_read_on_every_call_however_it_changed(plan_calls):
    gen = torch.Generator().manual_seed(1)
    module = DepthwiseConv2d(16, 3, padding=1)
    x = _channels_last_at((2, 16, 7, 7), 0, torch.float32, gen)
    with torch.no_grad():
        module(x)
        module.weight.data.mul_(2.0)  # not counted by the parameter's version
        torch.testing.assert_close(module(x), _reference(module, x))
        module.weight.numpy()[:, 0, 1, 1] = 5.0  # through NumPy: not counted either
        module.bias.data.zero_()
        torch.testing.assert_close(module(x), _reference(module, x))
        module.weight = torch.nn.Parameter(torch.randn(16, 1, 3, 3, generator=gen))  # a new parameter
        torch.testing.assert_close(module(x), _reference(module, x))
        module.weight.data = torch.randn(16, 1, 3, 3, generator=gen)  # the same parameter on new memory
        module.bias.data = torch.randn(16, generator=gen)
        torch.testing.assert_close(module(x), _reference(module, x))
        module.weight.set_(torch.randn(16, 1, 3, 3, generator=gen))  # (set_: new memory too)
        torch.testing.assert_close(module(x), _reference(module, x))
    assert len(plan_calls) == 5


def test_changed_options_shapes_or_dtypes_take_the_general_path_and_prepare_again(plan_calls):
    gen = torch.Generator().manual_seed(2)
    module = DepthwiseConv2d(16, 3, padding=1)
    x = _channels_last_at((2, 16, 9, 9), 0, torch.float32, gen)
    with torch.no_grad():
        module(x)
        module.stride = (2, 2)
        torch.testing.assert_close(module(x), _reference(module, x))
        assert not plan_calls
        torch.testing.assert_close(module(x), _reference(module, x))
        assert len(plan_calls) == 1
        bigger = _channels_last_at((3, 16, 12, 10), 0, torch.float32, gen)
        torch.testing.assert_close(module(bigger), _reference(module, bigger))
        module.double()
        torch.testing.assert_close(module(bigger.double()), _reference(module, bigger.double()))
        module.bias = None
        torch.testing.assert_close(module(bigger.double()), _reference(module, bigger.double()))
    assert len(plan_calls) == 1


@pytest.mark.parametrize("case", ["channels_first", "multiplier", "activation", "wide", "sliced"])
def test_calls_without_a_prepared_launch_stay_on_the_general_path(plan_calls, case):
    gen = torch.Generator().manual_seed(3)
    channels, mult, size, activation = 8, 2 if case == "multiplier" else 1, 7 if case == "wide" else 3, None
    if case == "activation":
        activation = "relu"
    module = DepthwiseConv2d(channels, size, padding=size // 2, depth_multiplier=mult, activation=activation)
    x = _channels_last_at((2, channels, 9, 9), 0, torch.float32, gen)
    if case == "channels_first":
        x = x.contiguous()
    if case == "sliced":  # neither layout contiguous
        x = _channels_last_at((2, channels, 9, 18), 0, torch.float32, gen)[..., ::2]
    with torch.no_grad():
        ys = [module(x) for _ in range(3)]
    want = _reference(module, x)
    if activation:
        want = F.relu(want)
    torch.testing.assert_close(ys[-1], want)
    assert not plan_calls and module._plain is None


def test_autograd_and_non_finite_taps_take_the_general_path(plan_calls):
    gen = torch.Generator().manual_seed(4)
    module = DepthwiseConv2d(16, 3, padding=1, dtype=torch.float64)
    x = _channels_last_at((2, 16, 6, 6), 0, torch.float64, gen)
    with torch.no_grad():
        module(x)
    y = module(x.requires_grad_())  # recorded: the operator, with its gradients
    assert not plan_calls and y.requires_grad
    grad = torch.randn(y.shape, dtype=torch.float64, generator=gen)
    got = torch.autograd.grad(y, [x, module.weight, module.bias], grad)
    want_y = _reference(module, x)
    want = torch.autograd.grad(want_y, [x, module.weight, module.bias], grad)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    with torch.no_grad():
        module.weight[0, 0, 0, 0] = float("inf")  # Keras' padding rule: the general path's host pass
        y_inf = module(x)
        general = _general(module, x)
    assert not plan_calls
    assert torch.equal(torch.isnan(y_inf), torch.isnan(general)) and torch.isnan(y_inf).any()
    finite = ~torch.isnan(general)
    assert torch.equal(y_inf[finite], general[finite])


def test_copies_and_pickles_carry_no_prepared_launch(plan_calls):
    gen = torch.Generator().manual_seed(5)
    module = DepthwiseConv2d(16, 3, padding=1)
    x = _channels_last_at((2, 16, 6, 6), 0, torch.float32, gen)
    with torch.no_grad():
        y = module(x)
        assert module._plain is not None
        for other in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
            assert other._plain is None
            assert torch.equal(other(x), y) and torch.equal(other(x), y)
        assert set(module.state_dict()) == {"weight", "bias"}
    assert len(plan_calls) == 2


def test_a_compiled_module_after_eager_calls_equals_them():
    gen = torch.Generator().manual_seed(6)
    module = DepthwiseConv2d(16, 3, padding=1)
    x = _channels_last_at((2, 16, 8, 8), 0, torch.float32, gen)
    with torch.no_grad():
        eager = [module(x), module(x)]
        compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
        got = compiled(x)
    assert torch.equal(got, eager[1]) and torch.equal(eager[0], eager[1])


def test_keras_taps_line_up_and_refuse_non_finite_values():
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        weight = rng.standard_normal((12, 1, 3, 5)).astype(dtype)
        taps = conv2d_prepared.keras_taps(weight)
        assert taps.ctypes.data % 64 == 0 and taps.dtype == dtype
        np.testing.assert_array_equal(taps.reshape(3, 5, 12), weight[:, 0].transpose(1, 2, 0))
        for bad in (np.inf, -np.inf, np.nan):
            spoiled = weight.copy()
            spoiled[7, 0, 2, 4] = bad
            assert conv2d_prepared.keras_taps(spoiled) is None


def test_a_weight_reshaped_at_the_same_address_or_swapped_by_functional_call_is_read_as_it_is_now(plan_calls):
    gen = torch.Generator().manual_seed(10)
    module = DepthwiseConv2d(16, 3, padding=1)
    x = _channels_last_at((2, 16, 9, 12), 0, torch.float32, gen)
    with torch.no_grad():
        module(x), module(x)
        assert len(plan_calls) == 1
        w2, b2 = torch.randn(16, 1, 3, 3, generator=gen), torch.randn(16, generator=gen)
        swapped = torch.func.functional_call(module, {"weight": w2, "bias": b2}, (x,))  # (other tensors, one layout)
        torch.testing.assert_close(swapped, F.conv2d(x, w2, b2, 1, 1, groups=16))
        assert len(plan_calls) == 2
        address = module.weight.data_ptr()
        module.weight.data = module.weight.data.view(16, 1, 1, 9)  # the same memory as a 1x9 kernel
        assert module.weight.data_ptr() == address
        torch.testing.assert_close(module(x), _reference(module, x))
        assert module(x).shape == (2, 16, 11, 6)
    assert len(plan_calls) == 3  # (the 1x9 call prepared again: its second call)


def test_one_module_called_from_several_threads_gives_each_its_own_result(plan_calls):
    from cases import assert_same_from_threads

    gen = torch.Generator().manual_seed(7)
    module = DepthwiseConv2d(32, 3, padding=1)
    xs = [_channels_last_at((4, 32, 48, 48), 0, torch.float32, gen) for _ in range(3)]  # (2-part launches)

    def call(x):
        with torch.no_grad():
            return module(x).numpy(), ()

    assert_same_from_threads([lambda x=x: call(x) for x in xs], repeats=8)
    assert len(plan_calls) >= 20
    for x in xs:
        torch.testing.assert_close(module(x).detach(), _reference(module, x))


def test_inference_mode_and_inputs_requiring_grad_under_no_grad_take_the_prepared_launch(plan_calls):
    gen = torch.Generator().manual_seed(8)
    module = DepthwiseConv2d(16, 3, padding=1)
    x = _channels_last_at((2, 16, 9, 9), 0, torch.float32, gen)
    with torch.inference_mode():
        first, second = module(x), module(x)
    assert second.is_inference() and torch.equal(first, second)
    with torch.no_grad():
        third = module(x.clone().requires_grad_())
    assert len(plan_calls) == 2 and not third.requires_grad and torch.equal(third, second)
    torch.testing.assert_close(second, _reference(module, x))


def test_a_call_with_something_else_than_a_tensor_gets_the_general_paths_error():
    gen = torch.Generator().manual_seed(9)
    module = DepthwiseConv2d(8, 3, padding=1)
    x = _channels_last_at((1, 8, 5, 5), 0, torch.float32, gen)
    with torch.no_grad():
        module(x)
        assert module._plain is not None
        with pytest.raises(TypeError, match="torch tensors"):
            module(x.numpy())
        assert module._plain is not None and torch.equal(module(x), module(x))


def test_hooks_tracing_and_keyword_calls_go_through_module_call(plan_calls):
    gen = torch.Generator().manual_seed(9)
    module = DepthwiseConv2d(16, 3, padding=1)
    x = _channels_last_at((2, 16, 8, 8), 0, torch.float32, gen)
    with torch.no_grad():
        want = _reference(module, x)
        module(x)
        torch.testing.assert_close(module(x), want)  # (the prepared forward, straight from __call__)
        assert len(plan_calls) == 1
        seen = []
        handle = module.register_forward_hook(lambda m, args, out: seen.append(out.shape))
        torch.testing.assert_close(module(x), want)
        handle.remove()
        pre = torch.nn.modules.module.register_module_forward_pre_hook(lambda m, args: seen.append("pre"))
        try:
            torch.testing.assert_close(module(x), want)
        finally:
            pre.remove()
        assert seen == [want.shape, "pre"]
        torch.testing.assert_close(module(input=x), want)
        tracer = torch.fx.Tracer()
        tracer.is_leaf_module = lambda m, name: True  # (torch.fx patches nn.Module.__call__: it must see ours)
        graph = tracer.trace(torch.nn.Sequential(module, torch.nn.ReLU()))
        assert [n.op for n in graph.nodes] == ["placeholder", "call_module", "call_module", "output"]
    assert len(plan_calls) == 4  # (hooked and keyword calls run forward: its own prepared launch)
