"""bfloat16 bit conversions (the GPU kernels' integer arithmetic) against an independent float64 rounding."""

import numpy as np

from numba_dwconv._bfloat16 import bf16_bits_from_f32, f32_from_bf16_bits


def _nearest_bf16(value: np.float32) -> int:
    """Round-to-nearest-even by comparing distances in float64 to the two neighbouring bfloat16 values."""
    bits = int(np.float32(value).view(np.uint32))
    sign, magnitude = bits & 0x80000000, bits & 0x7FFFFFFF
    low = magnitude >> 16
    if magnitude == 0x7F800000:  # infinity is a bfloat16 value
        return (sign >> 16) | low
    lo_value = float(np.uint32(low << 16).view(np.float32))
    # the next bfloat16 up; past the largest finite one the "next value" is 2**128 (which rounds to inf)
    hi_value = 2.0**128 if low + 1 == 0x7F80 else float(np.uint32((low + 1) << 16).view(np.float32))
    x = float(np.uint32(magnitude).view(np.float32))
    below, above = x - lo_value, hi_value - x
    pick = low if below < above or (below == above and low % 2 == 0) else low + 1
    return (sign >> 16) | pick


def test_rounding_matches_an_independent_reference():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 20000, dtype=np.uint64).astype(np.uint32)
    special = np.array([0x00000000, 0x80000000, 0x00000001, 0x007FFFFF, 0x00008000, 0x00018000, 0x3F808000,
                        0x3F818000, 0x3F80FFFF, 0x7F7F7FFF, 0x7F7F8000, 0x7F7FFFFF, 0xFF7F8000, 0x7F800000,
                        0xFF800000], np.uint32)
    values = np.concatenate([bits, special]).view(np.float32)
    values = values[~np.isnan(values)]
    got = bf16_bits_from_f32(values)
    want = np.array([_nearest_bf16(v) for v in values], np.uint16)
    np.testing.assert_array_equal(got, want)


def test_nan_stays_nan_with_its_sign_and_widening_is_exact():
    nans = np.array([0x7FC00000, 0x7F800001, 0xFFFFFFFF, 0x7F80FFFF], np.uint32).view(np.float32)
    out = f32_from_bf16_bits(bf16_bits_from_f32(nans))
    assert np.isnan(out).all()
    np.testing.assert_array_equal(np.signbit(out), np.signbit(nans))
    every = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    widened = f32_from_bf16_bits(every)
    finite = ~np.isnan(widened)
    np.testing.assert_array_equal(bf16_bits_from_f32(widened[finite]), every[finite])  # round trip is exact
