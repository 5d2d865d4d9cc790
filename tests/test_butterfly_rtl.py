"""The generated butterfly array under cocotb, on Verilator and Icarus, bit-exact against
sim/butterfly.py.

Every simulation streams transforms of changing lengths back to back (N from
``max(lanes, 2)`` to ``n_max``). Throttled runs add random valid gaps and ready
backpressure; full-rate runs also check the cycle model (``fft_array_cycles``) exactly.
"""

import numpy as np
import pytest

from attnforge.configs.butterfly import ButterflyConfig
from attnforge.sim import butterfly as model
from attnforge.tb.butterfly import (FFN, FFN_BENCH, FNET_BENCH, Layer, compare, compare_bffn,
                                    compare_fft, compare_fnet, fft_regression_batch, fft_vectors,
                                    fnet_regression_frames, minilm_fft_rows, random_twiddle,
                                    regression, simulate, simulate_bffn, simulate_butterfly,
                                    simulate_fft, simulate_fnet)

pytestmark = pytest.mark.sim

#: two lanes, narrow formats (twiddle_bits = width): every length 2 … 32
SMALL = ButterflyConfig(width=12, twiddle_bits=12, n_max=32, lanes=2)
#: four lanes at the paper's 16 bits: lengths 4 … 128, block-RAM exchanges
WIDE = ButterflyConfig(width=16, twiddle_bits=16, n_max=128, lanes=4)

#: FFT only (linear=0): identity, rotation, constants and three-multiplier PEs
#: (rtl/butterfly/pe.py)
FFT_ONLY = ButterflyConfig(width=16, twiddle_bits=16, n_max=64, lanes=4, linear=0)

CONFIGS = [pytest.param(SMALL, marks=pytest.mark.xdist_group("butterfly-small"), id="small"),
           pytest.param(WIDE, marks=pytest.mark.xdist_group("butterfly-wide"), id="wide"),
           pytest.param(FFT_ONLY, marks=pytest.mark.xdist_group("butterfly-fft-only"),
                        id="fft-only")]


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("seed", [0, 1], ids=["full-rate", "throttled"])
def test_regression(cfg, seed, simulator, build_root):
    """Every length and input kind (random and extreme full scale, saturating square wave,
    tiny ±1, tone, impulse, zeros) shuffled back to back; seed 1 with gaps and backpressure,
    seed 0 at full rate with the cycle model checked exactly. Then butterfly-linear
    transforms (weights written first) mixed with FFTs of other lengths."""
    regression(cfg, seed, sim=simulator, build_root=build_root)


@pytest.mark.xdist_group("butterfly-wide")
def test_full_scale_and_tiny_inputs(simulator, build_root):
    """Overflow and underflow as documented: the full-scale square wave saturates, ±1 inputs
    shrink to nothing, a tone at the documented bound does not saturate; the RTL agrees with
    the model on all of them, with backpressure."""
    cfg = WIDE
    rng = np.random.default_rng(5)
    re, im, kinds = [], [], []
    for n in (128, 16, 64):
        for kind, (r, i) in fft_vectors(cfg, n, rng).items():
            if kind in ("square", "dc_max", "tiny", "tone", "extremes"):
                re.append(r), im.append(i), kinds.append(kind)
    for kind in ("square", "tiny", "tone"):
        stats = {}
        for r, i, k in zip(re, im, kinds):
            if k == kind:
                out_re, out_im, _ = model.fft(r, i, cfg, stats=stats)
                if kind == "tiny":
                    assert max(np.abs(out_re).max(), np.abs(out_im).max()) <= 1
        assert (stats["saturated"] > 0) == (kind == "square"), (kind, stats)
    result = simulate_fft(re, im, cfg, sim=simulator, in_rate=0.8, out_rate=0.5, seed=9,
                          build_root=build_root)
    compare_fft(re, im, result, cfg)


@pytest.mark.xdist_group("butterfly-wide")
def test_minilm_hidden_states(simulator, build_root):
    """Real data: MiniLM-L6 hidden states (layer 3) as 16-bit FFT inputs, N = 128 and 64
    back to back with gaps and backpressure."""
    cfg = WIDE
    rows = minilm_fft_rows(cfg, 128, 8)
    re = [*rows[:4], *rows[4:, :64]]
    result = simulate_fft(re, None, cfg, sim=simulator, in_rate=0.6, out_rate=0.7, seed=2,
                          build_root=build_root)
    compare_fft(re, None, result, cfg)
    # the real data is not degenerate: the spectrum uses the format
    assert max(np.abs(np.asarray(r)).max() for r in result["re"]) > 64


@pytest.mark.xdist_group("butterfly-small")
def test_minilm_small_with_backpressure(simulator, build_root):
    cfg = SMALL
    rows = minilm_fft_rows(cfg, 32, 12, layer=1, passage=1)
    result = simulate_fft(rows, rows[::-1].copy(), cfg, sim=simulator, in_rate=0.5,
                          out_rate=0.4, seed=4, build_root=build_root)
    compare_fft(rows, rows[::-1].copy(), result, cfg)


# ---- the checker itself (no simulator) -----------------------------------------------------

@pytest.mark.parametrize("what", ["one_bit", "scale", "cycles", "error"])
def test_compare_catches_disagreement(what):
    """compare_fft fails on one wrong bit, a wrong exponent, a cycle off, the error flag."""
    cfg = SMALL
    re, im, _ = fft_regression_batch(cfg, 3)
    re, im = re[:6], im[:6]
    outs = [model.fft(r, i, cfg) for r, i in zip(re, im)]
    timing = model.fft_array_cycles([len(r) for r in re], cfg)
    result = {"re": [o[0].copy() for o in outs], "im": [o[1].copy() for o in outs],
              "scale_log2": np.array([int(o[2]) for o in outs]), "error": 0,
              "cycles": timing["latency"].copy(), "total_cycles": timing["total"]}
    compare_fft(re, im, result, cfg, check_cycles=True)
    if what == "one_bit":
        result["im"][4][1] ^= 1
    elif what == "scale":
        result["scale_log2"][2] += 1
    elif what == "cycles":
        result["cycles"][5] += 1
    else:
        result["error"] = 1
    with pytest.raises(AssertionError):
        compare_fft(re, im, result, cfg, check_cycles=True)


# ---- butterfly linear layers (PE real mode, weights written at run time) ----------------------

@pytest.mark.xdist_group("butterfly-wide")
def test_butterfly_layers_of_several_lengths(simulator, build_root):
    """A layer of learned-like weights per length (N = 4, 8 < lanes², and 128), each
    written through the weight stream, then its rows with gaps and backpressure; an FFT of
    another length interleaved; bit-exact against sim/butterfly.butterfly, with the
    batch-calibrated and the static (worst-case) stage shifts."""
    cfg = WIDE
    rng = np.random.default_rng(21)
    for n, scaling in ((4, "static"), (8, "batch"), (128, "batch")):
        x = rng.integers(cfg.data_min, cfg.data_max + 1, (4, n))
        x[1] = rng.choice([cfg.data_min, cfg.data_max], n)
        layer = Layer(random_twiddle(n, rng), cfg, x=x, scaling=scaling)
        fft_re, fft_im = fft_vectors(cfg, 16, rng)["random"]
        re = [x[0], x[1], fft_re, x[2], x[3]]
        im = [np.zeros(n, dtype=np.int64)] * 2 + [fft_im] + [np.zeros(n, dtype=np.int64)] * 2
        modes = [1, 1, 0, 1, 1]
        result = simulate(re, im, cfg, modes=modes, layer=layer, sim=simulator, in_rate=0.7,
                          out_rate=0.6, seed=n, build_root=build_root)
        compare(re, im, result, cfg, modes=modes, layer=layer)


@pytest.mark.xdist_group("butterfly-wide")
def test_butterfly_layer_on_minilm(simulator, build_root):
    """Real data: MiniLM-L6 hidden states through a 128-point butterfly layer at full rate
    (and the float product is approximated: SQNR stated in the assertion)."""
    cfg = WIDE
    x = minilm_fft_rows(cfg, 128, 6, layer=4)
    rng = np.random.default_rng(4)
    twiddle = random_twiddle(128, rng)
    layer = Layer(twiddle, cfg, x=x)
    result = simulate_butterfly(x, layer, cfg, sim=simulator, build_root=build_root)
    compare(x, None, result, cfg, modes=[1] * len(x), layer=layer)
    approx = model.descale(result["y"], result["scale_log2"])
    assert model.sqnr_db(approx, model.butterfly_float(x, twiddle)) > 50


# ---- FNet: two arrays chained through the on-chip transpose ----------------------------------

#: four lanes (bank rotation in the transpose), frames up to 64 × 16
FNET = ButterflyConfig(width=16, twiddle_bits=16, n_max=64, lanes=4, frame_max=1024)


@pytest.mark.xdist_group("butterfly-fnet")
@pytest.mark.parametrize("seed", [0, 1], ids=["full-rate", "throttled"])
def test_fnet_regression(seed, simulator, build_root):
    """Frames of several shapes back to back (random and extreme full scale, tiny, and MiniLM
    hidden states as x), bit-exact against sim/butterfly.fnet; seed 1 with gaps and
    backpressure."""
    FNET_BENCH.regression(FNET, seed, sim=simulator, build_root=build_root)


@pytest.mark.xdist_group("butterfly-fnet")
def test_fnet_minilm_tokens(simulator, build_root):
    """MiniLM-L6 hidden states: 16 tokens × 64 features and 64 tokens × 16 features."""
    rows = minilm_fft_rows(FNET, 64, 64, layer=5, passage=1)
    frames = [rows[:16, :64], rows[:, :16]]
    result = simulate_fnet(frames, FNET, sim=simulator, in_rate=0.9, out_rate=0.8, seed=6,
                           build_root=build_root)
    compare_fnet(frames, result, FNET)
    assert [y.shape for y in result["y"]] == [(16, 64), (64, 16)]


def test_compare_fnet_catches_one_wrong_output():
    frames, _ = fnet_regression_frames(FNET, 2)
    outs = [model.fnet(f, FNET) for f in frames]
    result = {"y": [o[0].copy() for o in outs], "scale_log2": np.array([int(o[1]) for o in outs]),
              "error": 0}
    compare_fnet(frames, result, FNET)
    result["y"][0][3, 1] += 1
    with pytest.raises(AssertionError, match="frame 0"):
        compare_fnet(frames, result, FNET)


# ---- the butterfly FFN: two butterfly-linear arrays chained column to column ------------------

#: four lanes, rows up to 32: the second array's chained schedule with its top exchange
BFFN = ButterflyConfig(width=16, twiddle_bits=16, n_max=32, lanes=4)


@pytest.mark.xdist_group("butterfly-ffn")
@pytest.mark.parametrize("seed", [0, 1], ids=["full-rate", "throttled"])
def test_bffn_regression(seed, simulator, build_root):
    """Random and extreme full scale, tiny, DC, zeros and MiniLM rows back to back through
    both layers (weights for both through the one weight stream first), bit-exact against
    sim/butterfly.ffn; seed 0 at N = 32 at full rate with the cycle model checked exactly,
    seed 1 at N = 16 with gaps and backpressure."""
    FFN_BENCH.regression(BFFN, seed, sim=simulator, build_root=build_root)


@pytest.mark.xdist_group("butterfly-ffn")
def test_bffn_minilm_rows(simulator, build_root):
    """Real data: 12 MiniLM-L6 hidden-state rows (layer 4) back to back through a 32-point
    FFN, with valid gaps and heavy backpressure, then at full rate (cycles checked against
    sim/butterfly.ffn_cycles); the rows overlap in the chained arrays, and the float FFN is
    approximated (SQNR stated in the assertion)."""
    x = minilm_fft_rows(BFFN, 32, 12, layer=4)
    rng = np.random.default_rng(12)
    tw1, tw2 = random_twiddle(32, rng), random_twiddle(32, rng)
    ffn = FFN(tw1, tw2, BFFN, x=x)
    for in_rate, out_rate in ((0.8, 0.4), (1.0, 1.0)):
        result = simulate_bffn(x, ffn, BFFN, sim=simulator, in_rate=in_rate, out_rate=out_rate,
                               seed=7, build_root=build_root)
        compare_bffn(x, result, ffn, BFFN, check_cycles=in_rate == out_rate == 1.0)
        print(f"\nbffn N=32 rates {in_rate}/{out_rate}: cycles per row {result['cycles'].tolist()},"
              f" total {result['total_cycles']}")
        assert np.all(result["first_in"][1:] < result["last_out"][:-1])      # back to back
    approx = model.descale(result["y"], result["scale_log2"])
    assert model.sqnr_db(approx, model.ffn_float(x, tw1, tw2)) > 58      # 63.9 dB
