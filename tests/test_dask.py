"""The ops on dask arrays, over random chunkings, against the NumPy reference (numba_dwconv.reference)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

da = pytest.importorskip("dask.array")
import numba_dwconv as nd  # noqa: E402
from numba_dwconv import _dask  # noqa: E402
from numba_dwconv import reference as ref  # noqa: E402

SETTINGS = dict(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _split(draw, n):
    """A random chunking of an axis of length ``n``: sizes >= 1 summing to ``n``."""
    if n <= 1:
        return (n,)
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=min(4, n - 1))))
    edges = [0, *cuts, n]
    return tuple(b - a for a, b in zip(edges[:-1], edges[1:]))


@st.composite
def problems_1d(draw):
    layout = draw(st.sampled_from(["channels_last", "channels_first"]))
    padding = draw(st.sampled_from(["valid", "same", "causal"]))
    ksize, dilation = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    length = draw(st.integers((ksize - 1) * dilation + 1, 30))
    batch, channels, mult = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 2))
    shape = (batch, length, channels) if layout == "channels_last" else (batch, channels, length)
    chunks = tuple(_split(draw, n) for n in shape)
    return layout, padding, ksize, dilation, stride, shape, chunks, mult


@given(problems_1d(), st.sampled_from([None, "silu"]), st.integers(0, 2**31 - 1))
@settings(**SETTINGS)
def test_1d_forward_and_every_gradient_over_random_chunkings(problem, activation, seed):
    layout, padding, ksize, dilation, stride, shape, chunks, mult = problem
    rng = np.random.default_rng(seed)
    channels = shape[2] if layout == "channels_last" else shape[1]
    x = rng.standard_normal(shape)
    kernel = rng.standard_normal((ksize, channels, mult))
    bias = rng.standard_normal(channels * mult)
    args = (stride, padding, layout, dilation)
    want = ref.conv1d_forward(x, kernel, bias, stride, padding, layout, dilation)
    if activation:
        want = ref.activation(activation, want)
    xd = da.from_array(x, chunks=chunks)
    got = nd.depthwise_conv1d(xd, kernel, bias, *args, activation=activation)
    assert isinstance(got, da.Array)
    np.testing.assert_allclose(got.compute(), want, rtol=1e-10, atol=1e-10)

    grad = rng.standard_normal(want.shape)
    grad_chunks = tuple(_split_like(n, rng) for n in grad.shape)  # unrelated to the inputs' chunking
    gd = da.from_array(grad, chunks=grad_chunks)
    want_grads = nd.depthwise_conv1d_backward(grad, x, kernel, *args, bias=bias, activation=activation)
    got_grads = nd.depthwise_conv1d_backward(gd, xd, kernel, *args, bias=bias, activation=activation)
    for g, w in zip(got_grads, want_grads):
        assert isinstance(g, da.Array)
        np.testing.assert_allclose(g.compute(), w, rtol=1e-9, atol=1e-9)
    if activation is None:  # the reference's chain rule, independently of the in-memory op
        ref_x, ref_k, ref_b = ref.conv1d_gradients(grad, x, kernel, stride, padding, layout, dilation)
        np.testing.assert_allclose(got_grads[0].compute(), ref_x, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(got_grads[1].compute(), ref_k, rtol=1e-9, atol=1e-9)
        length = shape[1] if layout == "channels_last" else shape[2]
        gi = nd.depthwise_conv1d_input_grad(gd, kernel, length, *args)
        np.testing.assert_allclose(gi.compute(), ref_x, rtol=1e-9, atol=1e-9)
        gk, gb = nd.depthwise_conv1d_kernel_grad(gd, xd, ksize, *args)
        np.testing.assert_allclose(gk.compute(), ref_k, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(gb.compute(), ref_b, rtol=1e-9, atol=1e-9)


def _split_like(n, rng):
    if n <= 1:
        return (n,)
    cuts = sorted(set(rng.integers(1, n, size=min(3, n - 1)).tolist()))
    edges = [0, *cuts, n]
    return tuple(b - a for a, b in zip(edges[:-1], edges[1:]))


@st.composite
def problems_2d(draw):
    layout = draw(st.sampled_from(["channels_last", "channels_first"]))
    padding = draw(st.sampled_from(["valid", "same"]))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 3)))
    height = draw(st.integers((kh - 1) * dilation[0] + 1, 12))
    width = draw(st.integers((kw - 1) * dilation[1] + 1, 12))
    batch, channels, mult = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    shape = (batch, height, width, channels) if layout == "channels_last" else (batch, channels, height, width)
    chunks = tuple(_split(draw, n) for n in shape)
    return layout, padding, (kh, kw), dilation, stride, shape, chunks, mult


@given(problems_2d(), st.integers(0, 2**31 - 1))
@settings(**SETTINGS)
def test_2d_forward_and_gradients_over_random_chunkings(problem, seed):
    layout, padding, ksize, dilation, stride, shape, chunks, mult = problem
    rng = np.random.default_rng(seed)
    channels = shape[3] if layout == "channels_last" else shape[1]
    x = rng.standard_normal(shape)
    kernel = rng.standard_normal((*ksize, channels, mult))
    bias = rng.standard_normal(channels * mult)
    args = (stride, padding, layout, dilation)
    want = ref.conv2d_forward(x, kernel, bias, stride, padding, layout, dilation)
    xd = da.from_array(x, chunks=chunks)
    np.testing.assert_allclose(nd.depthwise_conv2d(xd, kernel, bias, *args).compute(), want, rtol=1e-10, atol=1e-10)
    grad = rng.standard_normal(want.shape)
    gd = da.from_array(grad, chunks=tuple(_split_like(n, rng) for n in grad.shape))
    want_grads = ref.conv2d_gradients(grad, x, kernel, stride, padding, layout, dilation)
    for g, w in zip(nd.depthwise_conv2d_backward(gd, xd, kernel, *args), want_grads):
        np.testing.assert_allclose(g.compute(), w, rtol=1e-9, atol=1e-9)


def test_chunks_smaller_than_the_halo_and_a_dask_kernel():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 40, 3)).astype(np.float32)
    kernel = rng.standard_normal((7, 3, 1)).astype(np.float32)
    xd = da.from_array(x, chunks=(1, 1, 2))  # one position per chunk; the halo spans 12 chunks
    want = nd.depthwise_conv1d(x, kernel, None, 1, "same", dilation_rate=2)
    got = nd.depthwise_conv1d(xd, da.from_array(kernel), None, 1, "same", dilation_rate=2)
    np.testing.assert_allclose(got.compute(), want, rtol=1e-6, atol=1e-6)


def test_results_are_lazy_and_kernel_gradients_deterministic():
    calls = []

    def make(block_id=None):
        calls.append(block_id)
        return np.full((1, 8, 2), float(len(calls)))

    x = da.map_blocks(make, chunks=((1, 1), (8, 8, 8), (2,)), dtype=float, meta=np.empty((0, 0, 0)))
    y = nd.depthwise_conv1d(x, np.ones((3, 2, 1)), None, 1, "same")
    assert calls == [] and isinstance(y, da.Array)  # nothing computed yet
    y.compute()
    assert calls
    rng = np.random.default_rng(0)
    xs = da.from_array(rng.standard_normal((2, 300, 4)).astype(np.float32), chunks=(1, 37, 4))
    g = da.from_array(rng.standard_normal((2, 300, 4)).astype(np.float32), chunks=(2, 50, 2))
    first = [a.compute() for a in nd.depthwise_conv1d_kernel_grad(g, xs, 5, 1, "same")]
    second = [a.compute() for a in nd.depthwise_conv1d_kernel_grad(g, xs, 5, 1, "same")]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_bad_arguments_raise_before_anything_runs():
    xd = da.zeros((2, 10, 3), chunks=(1, 5, 3))
    with pytest.raises(ValueError, match="bias"):
        nd.depthwise_conv1d(xd, np.ones((3, 3, 1)), np.ones(4))
    with pytest.raises(ValueError, match="padding"):
        nd.depthwise_conv1d(xd, np.ones((3, 3, 1)), padding="full")
    with pytest.raises(ValueError, match="grad_outputs"):
        nd.depthwise_conv1d_backward(da.zeros((2, 9, 3), chunks=3), xd, np.ones((3, 3, 1)))


def test_output_blocks_follow_the_input_chunks():
    axis = nd._geometry.axis_geometry(20, 3, 2, 1, "same")
    assert _dask.output_blocks(axis, (5, 5, 10)) == [(0, 3), (3, 5), (5, 10)]


def test_a_cluster_of_two_worker_processes():
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 64, 8)).astype(np.float32)
    kernel = rng.standard_normal((4, 8, 1)).astype(np.float32)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, distributed.Client(cluster) as client:
        xd = da.from_array(x, chunks=(1, 16, 8))
        y = nd.depthwise_conv1d(xd, kernel, None, 1, "causal", activation="silu")
        grads = nd.depthwise_conv1d_backward(da.ones_like(y), xd, kernel, 1, "causal")
        got_y, *got_grads = client.compute([y, *grads], sync=True)
    np.testing.assert_allclose(got_y, nd.depthwise_conv1d(x, kernel, None, 1, "causal", activation="silu"),
                               rtol=1e-6, atol=1e-6)
    want = nd.depthwise_conv1d_backward(np.ones((2, 64, 8), np.float32), x, kernel, 1, "causal")
    for g, w in zip(got_grads, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
def test_initial_and_final_state_stay_lazy_and_equal_the_numpy_path(layout):
    rng = np.random.default_rng(6)
    shape, state_shape = ((2, 25, 3), (2, 4, 3)) if layout == "channels_last" else ((2, 3, 25), (2, 3, 4))
    x, state = rng.standard_normal(shape), rng.standard_normal(state_shape)
    kernel = rng.standard_normal((3, 3, 2))
    kw = dict(padding="causal", data_format=layout, dilation_rate=2)
    xd = da.from_array(x, chunks=(1, 2, 10) if layout == "channels_first" else (1, 10, 2))
    out, final = nd.depthwise_conv1d(xd, kernel, None, initial_state=state, return_final_state=True, **kw)
    assert isinstance(out, da.Array) and isinstance(final, da.Array)
    want, want_final = nd.depthwise_conv1d(x, kernel, None, initial_state=state, return_final_state=True, **kw)
    np.testing.assert_allclose(out.compute(), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(final.compute(), want_final)
    grad = rng.standard_normal(want.shape)
    got = nd.depthwise_conv1d_backward(da.from_array(grad, chunks=7), xd, kernel, initial_state=state, **kw)
    for g, w in zip(got, nd.depthwise_conv1d_backward(grad, x, kernel, initial_state=state, **kw)):
        np.testing.assert_allclose(g.compute(), w, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rank", [1, 2])
def test_separable_ops_on_dask_arrays(rank):
    rng = np.random.default_rng(7 + rank)
    spatial = (13,) if rank == 1 else (7, 9)
    x = rng.standard_normal((2, *spatial, 4))
    depthwise = rng.standard_normal((*(3,) * rank, 4, 2))
    pointwise = rng.standard_normal((*(1,) * rank, 8, 5))
    bias = rng.standard_normal(5)
    forward = nd.separable_conv1d if rank == 1 else nd.separable_conv2d
    backward = nd.separable_conv1d_backward if rank == 1 else nd.separable_conv2d_backward
    xd = da.from_array(x, chunks=(1, *(4,) * rank, 2))  # channel blocks: the pointwise step sums across them
    got = forward(xd, depthwise, pointwise, bias, 1, "same", activation="gelu")
    want = forward(x, depthwise, pointwise, bias, 1, "same", activation="gelu")
    assert isinstance(got, da.Array)
    np.testing.assert_allclose(got.compute(), want, rtol=1e-10, atol=1e-10)
    grad = rng.standard_normal(want.shape)
    got_grads = backward(da.from_array(grad, chunks=3), xd, depthwise, pointwise, 1, "same", bias=bias,
                         activation="gelu")
    for g, w in zip(got_grads, backward(grad, x, depthwise, pointwise, 1, "same", bias=bias, activation="gelu")):
        np.testing.assert_allclose(g.compute(), w, rtol=1e-9, atol=1e-9)


@st.composite
def packed_problems(draw):
    layout = draw(st.sampled_from(["channels_last", "channels_first"]))
    ksize, dilation = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    length = draw(st.integers(1, 30))
    batch, channels, mult = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 2))
    shape = (batch, length, channels) if layout == "channels_last" else (batch, channels, length)
    chunks = tuple(_split(draw, n) for n in shape)
    ids_chunks = (_split(draw, batch), _split(draw, length))
    return layout, ksize, dilation, shape, chunks, mult, ids_chunks


def _packed_ids(rng, batch, length):
    """Sequences one after another along each row (ids non-decreasing), padding (-1) at some row ends."""
    ids = np.sort(rng.integers(0, max(1, length // 3), (batch, length)), axis=1)
    for row in ids:
        row[length - rng.integers(0, 3):] = -1
    return ids


@given(packed_problems(), st.sampled_from([None, "silu"]), st.booleans(), st.integers(0, 2**31 - 1))
@settings(**SETTINGS)
def test_packed_sequences_over_random_chunkings(problem, activation, dask_ids, seed):
    layout, ksize, dilation, shape, chunks, mult, ids_chunks = problem
    rng = np.random.default_rng(seed)
    channels = shape[2] if layout == "channels_last" else shape[1]
    batch, length = shape[0], (shape[1] if layout == "channels_last" else shape[2])
    x = rng.standard_normal(shape)
    kernel = rng.standard_normal((ksize, channels, mult))
    bias = rng.standard_normal(channels * mult)
    ids = _packed_ids(rng, batch, length)
    ids_arg = da.from_array(ids, chunks=ids_chunks) if dask_ids else ids
    kwargs = dict(padding="causal", data_format=layout, dilation_rate=dilation)
    xd = da.from_array(x, chunks=chunks)
    got = nd.depthwise_conv1d(xd, kernel, bias, sequence_ids=ids_arg, activation=activation, **kwargs)
    assert isinstance(got, da.Array)
    want = ref.conv1d_packed(x, kernel, bias, ids, layout, dilation)
    if activation:
        want = np.where((ids >= 0)[:, :, None] if layout == "channels_last" else (ids >= 0)[:, None, :],
                        ref.activation(activation, want), 0.0)
    np.testing.assert_allclose(got.compute(), want, rtol=1e-10, atol=1e-10)

    grad = rng.standard_normal(want.shape)
    gd = da.from_array(grad, chunks=tuple(_split_like(n, rng) for n in grad.shape))  # unrelated chunking
    got_grads = nd.depthwise_conv1d_backward(gd, xd, kernel, sequence_ids=ids_arg, bias=bias, activation=activation,
                                             **kwargs)
    assert all(isinstance(g, da.Array) for g in got_grads)
    if activation is None:  # the independent reference
        want_grads = ref.conv1d_packed_gradients(grad, x, kernel, ids, layout, dilation)
    else:  # the in-memory op, itself checked against the reference and finite differences elsewhere
        want_grads = nd.depthwise_conv1d_backward(grad, x, kernel, sequence_ids=ids, bias=bias, activation=activation,
                                                  **kwargs)
    for g, w in zip(got_grads, want_grads):
        np.testing.assert_allclose(g.compute(), w, rtol=1e-9, atol=1e-9)


def test_packed_sequences_validate_dask_operands_eagerly():
    xd = da.zeros((1, 8, 2), chunks=(1, 4, 2))
    with pytest.raises(ValueError, match="sequence_ids"):
        nd.depthwise_conv1d(xd, np.ones((3, 2, 1)), padding="causal", sequence_ids=np.zeros((1, 7), int))
    with pytest.raises(TypeError, match="sequence_ids"):
        nd.depthwise_conv1d(xd, np.ones((3, 2, 1)), padding="causal", sequence_ids=da.zeros((1, 8), chunks=4))
    with pytest.raises(ValueError, match="causal"):
        nd.depthwise_conv1d(xd, np.ones((3, 2, 1)), padding="same", sequence_ids=np.zeros((1, 8), int))
    bad = da.from_array(np.array([[0, 0, 1, 1, 0, 0, 2, 2]]), chunks=4)  # sequence 0 in two runs
    with pytest.raises(ValueError, match="non-decreasing"):
        nd.depthwise_conv1d(xd, np.ones((3, 2, 1)), padding="causal", sequence_ids=bad).compute()


def test_the_dask_bench_rows_run():
    from numba_dwconv.bench import dask_bench

    row = dask_bench.overhead_row(repeat=1, batch=1, length=4096, channels=8, chunk_bytes=16 << 10)
    assert row["forward_over_memory"] > 0 and row["forward_backward_over_memory"] > 0
    big = dask_bench.larger_than_memory_row(0.002, True, channels=8, chunk_rows=1024)
    assert big["input_GiB"] > 0 and big["peak_rss_GiB"] > 0 and big["GBps"] > 0
