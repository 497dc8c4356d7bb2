"""Shared test helpers: seeded cases and tolerances scaled to the reference values."""

import threading

import numpy as np

TOL = {np.float16: 2e-2, np.float32: 2e-5, np.float64: 1e-12}


def host(array):
    """A NumPy view or copy of ``array`` (device arrays are copied to the host)."""
    return array.copy_to_host() if hasattr(array, "copy_to_host") else np.asarray(array)


def assert_close(got, want, dtype):
    """Elementwise closeness, with the absolute tolerance scaled by the largest reference value."""
    got = host(got).astype(np.float64)
    want = np.asarray(want, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype] * scale)


def make_case(rng, batch, length, channels, ksize, mult, data_format, dtype):
    """Random inputs in ``data_format``, kernel (K, C, m) and bias (C*m,) of ``dtype``."""
    x = rng.standard_normal((batch, length, channels)).astype(dtype)
    if data_format == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 2, 1))
    kernel = rng.standard_normal((ksize, channels, mult)).astype(dtype)
    bias = rng.standard_normal(channels * mult).astype(dtype)
    return x, kernel, bias


def assert_same_from_threads(calls, repeats=5):
    """Each ``calls[i]()`` (returning ``(y, grads)``) run alone, then all at once from Python threads.

    Every thread waits at a barrier, then calls its function ``repeats`` times; its
    last result must equal the one computed alone, bit for bit.
    """
    expected = [call() for call in calls]
    results = [None] * len(calls)
    errors = []
    barrier = threading.Barrier(len(calls))

    def work(i):
        try:
            barrier.wait()
            for _ in range(repeats):
                results[i] = calls[i]()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for (y, grads), (y_want, grads_want) in zip(results, expected):
        np.testing.assert_array_equal(y, y_want)
        for a, b in zip(grads, grads_want):
            np.testing.assert_array_equal(a, b)
