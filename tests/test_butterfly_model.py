"""The butterfly models (sim/butterfly.py) against float references, and their documented edges.

SQNR thresholds sit a few dB below what these seeds measure (run with ``-s`` to see the
measured values); the model is deterministic, so they only move if the arithmetic does.
"""

import math

import numpy as np
import pytest

from attnforge.config import ConfigError
from attnforge.configs.butterfly import ButterflyConfig
from attnforge.sim import butterfly as B

CFG = ButterflyConfig()
FS = 1 << (CFG.width - 1)
ONE = 1 << CFG.coef_frac


def _random_complex(rng, n, amp, batch=32):
    return rng.integers(-amp, amp, (batch, n)), rng.integers(-amp, amp, (batch, n))


# -- the PE --------------------------------------------------------------------------------


def test_pe_fft_unit_twiddle_is_sum_and_difference():
    rng = np.random.default_rng(0)
    x0 = tuple(rng.integers(-FS, FS, 1000) for _ in range(2))
    x1 = tuple(rng.integers(-FS, FS, 1000) for _ in range(2))
    (y0r, y0i), (y1r, y1i) = B.pe_fft(x0, x1, (ONE, 0), 1)
    # shift 1: (x0 ± x1)/2 rounded half up = floor((x0 ± x1 + 1) / 2), never saturating
    assert np.array_equal(y0r, (x0[0] + x1[0] + 1) >> 1)
    assert np.array_equal(y0i, (x0[1] + x1[1] + 1) >> 1)
    assert np.array_equal(y1r, (x0[0] - x1[0] + 1) >> 1)
    assert np.array_equal(y1i, (x0[1] - x1[1] + 1) >> 1)
    # shift 0: x0 ± x1, saturated
    stats = {}
    (y0r, _), (y1r, _) = B.pe_fft(x0, x1, (ONE, 0), 0, stats=stats)
    assert np.array_equal(y0r, np.clip(x0[0] + x1[0], -FS, FS - 1))
    assert np.array_equal(y1r, np.clip(x0[0] - x1[0], -FS, FS - 1))
    assert stats["saturated"] > 0


def test_pe_fft_minus_j_and_minus_one():
    x0, x1 = (np.array([100, -7]), np.array([-3, 55])), (np.array([40, -9]), np.array([11, 6]))
    # W = -j: W·x1 = (x1.im, -x1.re)
    (y0r, y0i), (y1r, y1i) = B.pe_fft(x0, x1, (0, -ONE), 0)
    assert y0r.tolist() == (x0[0] + x1[1]).tolist() and y0i.tolist() == (x0[1] - x1[0]).tolist()
    assert y1r.tolist() == (x0[0] - x1[1]).tolist() and y1i.tolist() == (x0[1] + x1[0]).tolist()
    # W = -1 swaps the outputs of W = 1
    a = B.pe_fft(x0, x1, (-ONE, 0), 1)
    b = B.pe_fft(x0, x1, (ONE, 0), 1)
    assert np.array_equal(a[0], b[1]) and np.array_equal(a[1], b[0])


def test_pe_rounds_half_up_and_scales_both_ways():
    one = (ONE, 0)
    zero = (np.array([0, 0, 0, 0]), np.array([0, 0, 0, 0]))
    x1 = (np.array([3, -3, 1, -1]), np.array([0, 0, 0, 0]))
    (y0r, _), _ = B.pe_fft(zero, x1, one, 1)
    assert y0r.tolist() == [2, -1, 1, 0]           # 1.5 → 2, −1.5 → −1, 0.5 → 1, −0.5 → 0
    (y0r, _), _ = B.pe_fft(zero, x1, one, CFG.SHIFT_MAX)
    assert y0r.tolist() == [0, 0, 0, 0]            # 3/8 → 0, −3/8 → 0
    (y0r, _), _ = B.pe_fft(zero, x1, one, CFG.SHIFT_MIN)
    assert y0r.tolist() == [48, -48, 16, -16]      # scaled up by 16
    assert B.round_shift(np.array([5, -5, 6, -6]), 2).tolist() == [1, -1, 2, -1]


def test_pe_real_identity_negation_and_saturation():
    x0 = np.array([-FS, FS - 1, 0, 1234])
    x1 = np.array([FS - 1, -FS, -1, 77])
    y0, y1 = B.pe_real(x0, x1, (ONE, 0, 0, ONE), 0)
    assert np.array_equal(y0, x0) and np.array_equal(y1, x1)
    stats = {}
    y0, y1 = B.pe_real(x0, x1, (-ONE, 0, 0, 0), 0, stats=stats)
    assert y0.tolist() == [FS - 1, -(FS - 1), 0, -1234]   # −(−FS) saturates to FS−1
    assert stats["saturated"] == 1
    # full-scale 2×2 with the largest coefficients saturates at both ends, never wraps
    big = (1 << (CFG.twiddle_bits - 1)) - 1
    y0, y1 = B.pe_real(np.array([FS - 1, -FS]), np.array([FS - 1, -FS]), (big, big, -big, -big), 0)
    assert y0.tolist() == [FS - 1, -FS] and y1.tolist() == [-FS, FS - 1]


def test_pe_beat_model_selects_mode():
    rng = np.random.default_rng(1)
    n = 500
    x0 = tuple(rng.integers(-FS, FS, n) for _ in range(2))
    x1 = tuple(rng.integers(-FS, FS, n) for _ in range(2))
    coef = tuple(rng.integers(-2 * ONE, 2 * ONE, n) for _ in range(4))
    mode = rng.integers(0, 2, n)
    shift = rng.integers(CFG.SHIFT_MIN, CFG.SHIFT_MAX + 1, n)
    y0, y1 = B.pe(x0, x1, coef, mode, shift)
    f0, f1 = B.pe_fft(x0, x1, coef[:2], shift)
    r0, r1 = B.pe_real(x0[0], x1[0], coef, shift)
    fft = mode == B.MODE_FFT
    assert np.array_equal(y0[0], np.where(fft, f0[0], r0))
    assert np.array_equal(y1[1], np.where(fft, f1[1], 0))


# -- the FFT ------------------------------------------------------------------------------

# (N, input amplitude, scaling) → SQNR floor in dB; measured values in the comments.
FFT_SQNR = {
    (8, FS, "fixed"): 79,       # 82.2
    (64, FS, "fixed"): 71,      # 74.0
    (256, FS, "fixed"): 65,     # 68.6
    (1024, FS, "fixed"): 60,    # 63.1
    (8, FS, "block"): 79,       # 82.3
    (64, FS, "block"): 73,      # 76.7
    (256, FS, "block"): 71,     # 74.2
    (1024, FS, "block"): 69,    # 72.7
    (8, 256, "fixed"): 37,      # 40.5
    (64, 256, "fixed"): 29,     # 32.1
    (256, 256, "fixed"): 23,    # 26.5
    (1024, 256, "fixed"): 17,   # 20.8
    (8, 256, "block"): 86,      # 89.7
    (64, 256, "block"): 76,     # 79.3
    (256, 256, "block"): 72,    # 75.9
    (1024, 256, "block"): 70,   # 73.7
}


@pytest.mark.parametrize("n,amp,scaling", list(FFT_SQNR))
def test_fft_sqnr_against_numpy(n, amp, scaling):
    rng = np.random.default_rng(n + amp)
    re, im = _random_complex(rng, n, amp)
    stats = {}
    yr, yi, scale = B.fft(re, im, scaling=scaling, stats=stats)
    if scaling == "fixed":
        assert np.all(scale == math.log2(n))
    sqnr = B.sqnr_db(B.descale(yr + 1j * yi, scale), B.fft_float(re + 1j * im))
    print(f"FFT N={n:5d} amplitude={amp:6d} {scaling:5s}: SQNR {sqnr:5.1f} dB "
          f"(floor {FFT_SQNR[n, amp, scaling]}), scale_log2 {int(scale[0])}")
    assert stats["saturated"] == 0
    assert sqnr >= FFT_SQNR[n, amp, scaling]


def test_fft_real_input_and_one_vector():
    rng = np.random.default_rng(5)
    x = rng.integers(-FS, FS, 256)
    yr, yi, scale = B.fft(x)
    assert scale.shape == () and int(scale) == 8
    assert B.sqnr_db(B.descale(yr + 1j * yi, scale), np.fft.fft(x)) > 65


def test_fft_tiny_inputs_underflow_with_fixed_scaling_not_with_block():
    """Documented: the fixed policy halves every stage, so tiny inputs round away."""
    rng = np.random.default_rng(6)
    re, im = _random_complex(rng, 1024, 4)
    ref = B.fft_float(re + 1j * im)
    yr, yi, scale = B.fft(re, im)
    fixed = B.sqnr_db(B.descale(yr + 1j * yi, scale), ref)
    yr, yi, scale = B.fft(re, im, scaling="block")
    block = B.sqnr_db(B.descale(yr + 1j * yi, scale), ref)
    print(f"FFT N=1024 amplitude 4: fixed {fixed:.1f} dB, block {block:.1f} dB "
          f"(scale_log2 {int(scale[0])})")
    assert fixed < 0 and block > 70
    assert np.all(scale < 0)                         # block scaling brought the data up


def test_fft_full_scale_saturates_as_documented():
    n = 64
    ph = 2 * np.pi * np.arange(n) / n
    # A complex square wave at full scale: bin 1 has magnitude 4/π·FS, more than fits.
    re = np.where(np.cos(ph) >= 0, FS - 1, -FS)
    im = np.where(np.sin(ph) >= 0, FS - 1, -FS)
    ref = B.fft_float(re + 1j * im) / n
    assert abs(ref[1].real) > FS
    stats = {}
    yr, yi, scale = B.fft(re, im, stats=stats)
    assert stats["saturated"] > 0
    assert yr[1] == FS - 1                           # clamped, not wrapped:
    assert abs(yr[1] - ref[1].real) <= ref[1].real - (FS - 1) + 8   # the error is the excess
    # Block floating point makes room instead.
    stats = {}
    yr, yi, scale = B.fft(re, im, scaling="block", stats=stats)
    assert stats["saturated"] == 0
    assert B.sqnr_db(B.descale(yr + 1j * yi, scale), ref * n) > 70


@pytest.mark.parametrize("n", [8, 64, 1024])
def test_fft_bounded_inputs_never_saturate(n):
    """Documented: complex magnitude ≤ 2**(w−1) − 2·log2 N never saturates (fixed policy)."""
    r = FS - 2 * (n.bit_length() - 1)
    rng = np.random.default_rng(n)
    k = np.arange(n)
    rows = []
    for f in range(0, n, max(1, n // 16)):          # tones at full magnitude, several phases
        for phase in (0, np.pi / 4, np.pi / 3):
            rows.append(r * np.exp(1j * (2 * np.pi * f * k / n + phase)))
    rows.append(r * np.exp(2j * np.pi * rng.random((n,))))
    x = np.array(rows)
    re, im = np.trunc(x.real).astype(np.int64), np.trunc(x.imag).astype(np.int64)
    assert np.all(re ** 2 + im ** 2 <= r * r)
    stats = {}
    B.fft(re, im, stats=stats)
    assert stats["saturated"] == 0


def test_fft_is_the_butterfly_of_its_twiddles():
    """The stage/pair convention: FFT = butterfly matrix of [[1, W], [1, −W]] × bit reversal."""
    for n in (2, 8, 64):
        dense = B.butterfly_dense(B.fft_butterfly_twiddles(n))[:, B.bit_reverse(n)]
        assert np.allclose(dense, np.fft.fft(np.eye(n), axis=0))


def test_fft_twiddles_are_the_configs():
    wr, wi = B.fft_twiddles(16)
    assert wr.shape == (4, 8)
    assert (wr[0] == ONE).all() and (wi[0] == 0).all()          # stage 0: W = 1
    assert wr[1].tolist()[:2] == [ONE, 0] and wi[1].tolist()[:2] == [0, -ONE]
    for j in range(8):
        assert (wr[3, j], wi[3, j]) == CFG.twiddle(j, 16)
        w = np.exp(-2j * np.pi * j / 16)
        assert (wr[3, j], wi[3, j]) == tuple(B.quantize_coefs(np.array([w.real, w.imag])))


# -- the butterfly linear layer -------------------------------------------------------------


def _reference_stages(x, twiddle):
    """An independent float reference: the REFERENCE.md formula, loop by loop."""
    x = np.array(x, dtype=np.float64)
    n = x.shape[-1]
    for k in range(twiddle.shape[0]):
        s = 1 << k
        y = np.empty_like(x)
        for p in range(n // 2):
            b, j = divmod(p, s)
            lo, hi = 2 * b * s + j, 2 * b * s + s + j
            t = twiddle[k, p]
            y[..., lo] = t[0, 0] * x[..., lo] + t[0, 1] * x[..., hi]
            y[..., hi] = t[1, 0] * x[..., lo] + t[1, 1] * x[..., hi]
        x = y
    return x


def test_butterfly_dense_is_the_product_of_factors():
    rng = np.random.default_rng(2)
    for n in (2, 8, 32):
        tw = rng.normal(0, 0.7, (n.bit_length() - 1, n // 2, 2, 2))
        x = rng.normal(size=(3, n))
        assert np.allclose(B.butterfly_float(x, tw), _reference_stages(x, tw))
        # each factor has exactly 2n non-zeros (n/2 independent 2×2 blocks)
        assert all(np.count_nonzero(B.butterfly_factor(tw[k], k)) == 2 * n
                   for k in range(len(tw)))


# (N, input amplitude) → SQNR floor in dB with Gaussian weights (std 1/√2) and block scaling.
BUTTERFLY_SQNR = {
    (8, FS): 75,      # 78.9
    (64, FS): 69,     # 72.1
    (256, FS): 60,    # 63.6
    (1024, FS): 54,   # 57.1
    (8, 64): 60,      # 63.8
    (64, 64): 57,     # 60.5
    (256, 64): 55,    # 58.4
    (1024, 64): 52,   # 55.2
}


@pytest.mark.parametrize("n,amp", list(BUTTERFLY_SQNR))
def test_butterfly_sqnr_against_dense_product(n, amp):
    rng = np.random.default_rng(n * 7 + amp)
    tw = rng.normal(0, np.sqrt(0.5), (n.bit_length() - 1, n // 2, 2, 2))
    x = rng.integers(-amp, amp, (32, n))
    stats = {}
    y, scale = B.butterfly(x, tw, stats=stats)
    sqnr = B.sqnr_db(B.descale(y, scale), B.butterfly_float(x, tw))
    print(f"butterfly N={n:5d} amplitude={amp:6d}: SQNR {sqnr:5.1f} dB "
          f"(floor {BUTTERFLY_SQNR[n, amp]}), scale_log2 {int(scale[0])}")
    assert stats["saturated"] == 0
    assert sqnr >= BUTTERFLY_SQNR[n, amp]


def test_butterfly_integer_weights_and_explicit_shifts():
    rng = np.random.default_rng(3)
    n = 64
    eye = np.zeros((6, n // 2, 2, 2), dtype=np.int64)
    eye[..., 0, 0] = eye[..., 1, 1] = ONE
    x = rng.integers(-FS, FS, (4, n))
    y, scale = B.butterfly(x, eye, scaling=[0] * 6)
    assert np.array_equal(y, x) and np.all(scale == 0)
    # Swapping every pair at every stage flips every index bit: i → n−1−i
    swap = np.zeros_like(eye)
    swap[..., 0, 1] = swap[..., 1, 0] = ONE
    y, _ = B.butterfly(x, swap, scaling=[0] * 6)
    assert np.array_equal(y, x[:, ::-1])
    # Explicit shifts that are too small saturate, as documented.
    big = np.full((6, n // 2, 2, 2), 2 * ONE - 1, dtype=np.int64)
    stats = {}
    B.butterfly(np.full((1, n), FS - 1), big, scaling=[0] * 6, stats=stats)
    assert stats["saturated"] > 0



# -- the butterfly FFN: layer → ReLU → layer ---------------------------------------------------

# (N, input amplitude, scaling) → SQNR floor in dB against relu(x @ B1.T) @ B2.T, Gaussian
# weights (std 1/√2). "block": one exponent per vector and stage; "batch": the streaming
# block's shifts, one per stage over the batch (ffn_batch_shifts).
FFN_SQNR = {
    (16, FS, "block"): 68,     # 71.4
    (64, FS, "block"): 58,     # 61.1
    (256, FS, "block"): 54,    # 57.3
    (1024, FS, "block"): 47,   # 50.3
    (64, 64, "block"): 55,     # 58.0
    (16, FS, "batch"): 61,     # 64.6
    (64, FS, "batch"): 53,     # 56.0
    (256, FS, "batch"): 45,    # 48.4
    (1024, FS, "batch"): 41,   # 44.0
    (64, 64, "batch"): 53,     # 56.1
}


@pytest.mark.parametrize("n,amp,scaling", list(FFN_SQNR))
def test_ffn_sqnr_against_float(n, amp, scaling):
    rng = np.random.default_rng(n * 5 + amp)
    stages = n.bit_length() - 1
    tw1 = rng.normal(0, np.sqrt(0.5), (stages, n // 2, 2, 2))
    tw2 = rng.normal(0, np.sqrt(0.5), (stages, n // 2, 2, 2))
    x = rng.integers(-amp, amp, (32, n))
    shifts = B.ffn_batch_shifts(x, tw1, tw2) if scaling == "batch" else ("block", "block")
    stats = {}
    y, scale = B.ffn(x, tw1, tw2, scaling1=shifts[0], scaling2=shifts[1], stats=stats)
    sqnr = B.sqnr_db(B.descale(y, scale), B.ffn_float(x, tw1, tw2))
    print(f"ffn N={n:5d} amplitude={amp:6d} {scaling:5s}: SQNR {sqnr:5.1f} dB "
          f"(floor {FFN_SQNR[n, amp, scaling]})")
    assert stats["saturated"] == 0
    assert len(stats["shifts"]) == 2 * stages
    assert sqnr >= FFN_SQNR[n, amp, scaling]


def test_ffn_is_layer_relu_layer():
    """Bit for bit the composition of the linear-layer model and ReLU; exponents add."""
    rng = np.random.default_rng(8)
    n = 32
    tw1, tw2 = (rng.normal(0, 0.7, (5, n // 2, 2, 2)) for _ in range(2))
    x = rng.integers(-FS, FS, (6, n))
    s1, s2 = B.ffn_batch_shifts(x, tw1, tw2)
    y, scale = B.ffn(x, tw1, tw2, scaling1=s1, scaling2=s2)
    h, e1 = B.butterfly(x, tw1, scaling=s1)
    want, e2 = B.butterfly(np.maximum(h, 0), tw2, scaling=s2)
    assert np.array_equal(y, want) and np.array_equal(scale, e1 + e2)
    # layer 2 is calibrated on the ReLU output, which is never negative
    assert s2 == B.butterfly_batch_shifts(B.relu(h), tw2)


def test_ffn_relu_is_exact_in_the_data_format():
    """Identity layers with shift 0: the FFN is ReLU itself, extremes included."""
    n = 16
    eye = np.zeros((4, n // 2, 2, 2), dtype=np.int64)
    eye[..., 0, 0] = eye[..., 1, 1] = ONE
    x = np.array([[-FS, FS - 1, 0, -1, 1, *range(-5, 6)]])
    y, scale = B.ffn(x, eye, eye, scaling1=[0] * 4, scaling2=[0] * 4)
    assert np.array_equal(y, np.maximum(x, 0)) and int(scale[0]) == 0
    assert B.relu(np.array([CFG.data_min])).item() == 0


def test_quantize_weights_normalizes_each_stage():
    tw = np.zeros((3, 4, 2, 2))
    tw[0, 0, 0, 0] = 3.0          # beyond Q2: exponent 1
    tw[1, 0, 0, 0] = 0.1          # small: exponent −4 (0.1·16 = 1.6)
    tw[2, 0, 0, 0] = 1.99999999   # rounds up to 2.0: one more
    q, e = B.quantize_weights(tw)
    assert e.tolist() == [1, -4, 1]
    assert q[0, 0, 0, 0] == round(1.5 * ONE) and q[1, 0, 0, 0] == round(1.6 * ONE)
    assert q[2, 0, 0, 0] == ONE
    with pytest.raises(ValueError, match="NaN"):
        B.quantize_weights(np.full((1, 1, 2, 2), np.nan))


# -- FNet mixing --------------------------------------------------------------------------------

# (L, D, scaling) → SQNR floor in dB against Re(fft2) on full-scale random input.
FNET_SQNR = {
    (8, 8, "fixed"): 65,        # 68.9
    (64, 32, "fixed"): 52,      # 55.9
    (128, 256, "fixed"): 41,    # 44.3
    (8, 8, "block"): 74,        # 77.7
    (64, 32, "block"): 67,      # 70.0
    (128, 256, "block"): 64,    # 68.1
}


@pytest.mark.parametrize("L,D,scaling", list(FNET_SQNR))
def test_fnet_sqnr_against_fft2(L, D, scaling):
    rng = np.random.default_rng(L * 1000 + D)
    x = rng.integers(-FS, FS, (L, D))
    stats = {}
    y, scale = B.fnet(x, scaling=scaling, stats=stats)
    if scaling == "fixed":
        assert int(scale) == math.log2(L) + math.log2(D)
    sqnr = B.sqnr_db(B.descale(y, scale), B.fnet_float(x))
    print(f"FNet {L}×{D} {scaling:5s}: SQNR {sqnr:5.1f} dB (floor {FNET_SQNR[L, D, scaling]}), "
          f"scale_log2 {int(scale)}")
    assert stats["saturated"] == 0
    assert sqnr >= FNET_SQNR[L, D, scaling]


def test_fnet_batches_frames_with_their_own_exponents():
    rng = np.random.default_rng(9)
    x = np.stack([rng.integers(-FS, FS, (16, 8)), rng.integers(-8, 8, (16, 8))])
    y, scale = B.fnet(x, scaling="block")
    assert scale.shape == (2,) and scale[1] < scale[0]
    for f in range(2):
        yf, sf = B.fnet(x[f], scaling="block")
        assert np.array_equal(y[f], yf) and sf == scale[f]
        assert B.sqnr_db(B.descale(y[f], scale[f]), B.fnet_float(x[f])) > 60


# -- errors and the config ----------------------------------------------------------------------


def test_bad_inputs_name_the_value_and_range():
    with pytest.raises(ValueError, match=r"transform length 12 .* power of two in \[2, 1024\]"):
        B.fft(np.zeros(12, dtype=np.int64))
    with pytest.raises(ValueError, match=r"transform length 2048"):
        B.fft(np.zeros(2048, dtype=np.int64))
    with pytest.raises(ValueError, match=r"re value 32768 is out of range: expected \[-32768, 32767\]"):
        B.fft(np.full(8, FS))
    with pytest.raises(TypeError, match="integers"):
        B.fft(np.zeros(8))
    with pytest.raises(ValueError, match="scaling='float'"):
        B.fft(np.zeros(8, dtype=np.int64), scaling="float")
    with pytest.raises(ValueError, match=r"3 per-stage shifts, each in \[-4, 3\]"):
        B.fft(np.zeros(8, dtype=np.int64), scaling=[1, 1, 5])
    with pytest.raises(ValueError, match="twiddle has shape"):
        B.butterfly(np.zeros(8, dtype=np.int64), np.zeros((3, 3, 2, 2)))
    with pytest.raises(ValueError, match="not supported"):
        B.butterfly(np.zeros(8, dtype=np.int64), np.zeros((3, 4, 2, 2)), scaling="fixed")


def test_config_ranges_and_formats():
    assert (CFG.width, CFG.twiddle_bits, CFG.n_max, CFG.coef_frac) == (16, 16, 1024, 14)
    assert CFG.shift_bits == 3 and CFG.stages_max == 10
    assert CFG.twiddle(0, 8) == (ONE, 0) and CFG.twiddle(2, 8) == (0, -ONE)
    assert CFG.twiddle(4, 8) == (-ONE, 0)
    assert CFG.quantize_coef(5.0) == (1 << 15) - 1 and CFG.quantize_coef(-5.0) == -(1 << 15)
    with pytest.raises(ConfigError, match=r"twiddle_bits=19 is out of range"):
        ButterflyConfig(twiddle_bits=19)
    with pytest.raises(ConfigError, match=r"width=20 is out of range"):
        ButterflyConfig(width=20)
    with pytest.raises(ConfigError, match=r"n_max=1000 is out of range"):
        ButterflyConfig(n_max=1000)
    with pytest.raises(ConfigError, match=r"lanes=16 must be ≤ n_max=8"):
        ButterflyConfig(n_max=8, lanes=16)
    assert ButterflyConfig.from_strings(["width=12", "lanes=4"]).width == 12
    with pytest.raises(ConfigError, match="unknown parameter 'pes'"):
        ButterflyConfig.from_strings(["pes=16"])     # the array's PEs follow lanes and n_max


@pytest.mark.parametrize("lanes, n_max", [(2, 32), (4, 128), (8, 64)])
def test_array_cycles_one_length_streams_at_the_input_rate(lanes, n_max):
    """FFTs of one length: the first takes N/lanes beats in, the input slot (a cycle more
    when a transform has a second beat: it enters an empty slot mid-transform), the
    pipeline, the reorder buffer's write register, N/lanes beats out of it, its read and
    output registers; then one leaves every N/lanes cycles (transforms of one beat: one
    cycle more every third)."""
    from attnforge.sim.butterfly import fft_array_cycles, fft_array_pipeline
    cfg = ButterflyConfig(n_max=n_max, lanes=lanes)
    for log2n in range(lanes.bit_length() - 1, cfg.stages_max + 1):
        n = 1 << log2n
        timing = fft_array_cycles([n] * 5, cfg)
        assert timing["latency"][0] == 2 * (n // lanes) + fft_array_pipeline(n, cfg) + 4 + (n > lanes), n
        if n > lanes:
            assert np.all(np.diff(timing["last_out"]) == n // lanes), n
            assert np.all(np.diff(timing["first_in"]) == n // lanes), n
        else:
            # one-beat transforms: the writer sees a reorder region free a cycle after its
            # read-out ends, so the third transform after it waits a cycle
            assert list(np.diff(timing["last_out"])) == [1, 1, 2, 1], n


def test_array_cycles_real_transforms_pay_the_bit_reversal():
    """A real transform alone takes N/lanes + 2 cycles more than an FFT of its length (the
    bit-reversal buffer); back to back, both stream at N/lanes cycles per transform."""
    from attnforge.sim.butterfly import array_cycles
    cfg = ButterflyConfig(n_max=64, lanes=4)
    fft = array_cycles([64] * 6, None, cfg)
    real = array_cycles([64] * 6, [1] * 6, cfg)
    assert real["latency"][0] - fft["latency"][0] == 64 // 4 + 2     # + its read and output registers
    assert set(np.diff(real["last_out"]).tolist()) == {64 // 4}
