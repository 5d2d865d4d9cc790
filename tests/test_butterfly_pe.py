"""The butterfly PE (rtl/butterfly/pe.py) in Amaranth's simulator, bit for bit against sim/butterfly.py."""

import random
import zlib

import numpy as np
import pytest
from amaranth.sim import Simulator

from attnforge.configs.butterfly import ButterflyConfig
from attnforge.rtl.butterfly import ButterflyPE, Mode, pe_input_layout, pe_output_layout
from attnforge.rtl.butterfly.array import column_twiddles
from attnforge.rtl.butterfly.pe import fft_coefs
from attnforge.sim import butterfly as B


def _value(rng, bits):
    """A signed ``bits``-bit value, extremes (−2**(bits−1), max, 0, ±1) one time in three."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if rng.random() < 1 / 3:
        return rng.choice([lo, hi, 0, 1, -1, lo + 1])
    return rng.randint(lo, hi)


def _beats(cfg, count, rng, modes=(Mode.FFT, Mode.REAL)):
    beats = []
    for n in range(count):
        beats.append({
            "x0": {"re": _value(rng, cfg.width), "im": _value(rng, cfg.width)},
            "x1": {"re": _value(rng, cfg.width), "im": _value(rng, cfg.width)},
            "coef": [_value(rng, cfg.twiddle_bits) for _ in range(4)],
            "mode": rng.choice(modes),
            "shift": rng.randint(cfg.SHIFT_MIN, cfg.SHIFT_MAX),
            "last": int(n % 5 == 4 or n == count - 1),
        })
    return beats


def _expected(cfg, beats):
    """The model's outputs, as ``(y0re, y0im, y1re, y1im, last)`` tuples."""
    def col(f):
        return np.array([f(b) for b in beats], dtype=np.int64)
    x0 = (col(lambda b: b["x0"]["re"]), col(lambda b: b["x0"]["im"]))
    x1 = (col(lambda b: b["x1"]["re"]), col(lambda b: b["x1"]["im"]))
    coef = tuple(col(lambda b, k=k: b["coef"][k]) for k in range(4))
    mode = col(lambda b: b["mode"].value)
    shift = col(lambda b: b["shift"])
    (y0r, y0i), (y1r, y1i) = B.pe(x0, x1, coef, mode, shift, cfg)
    return [(int(a), int(b), int(c), int(d), beat["last"])
            for a, b, c, d, beat in zip(y0r, y0i, y1r, y1i, beats)]


def _run(cfg, beats, *, seed, gap=0.3, stall=0.3, twiddles=None):
    """Drive ``beats`` through the PE with random valid gaps and ready backpressure.

    Returns the output beats as ``(y0re, y0im, y1re, y1im, last)``, the cycles taken and
    the PE.
    """
    dut = ButterflyPE(cfg, twiddles=twiddles)
    rng = random.Random(seed)
    got = []
    cycles = [0]

    async def producer(ctx):
        for beat in beats:
            while rng.random() < gap:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            ctx.set(dut.i.payload, beat)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        while len(got) < len(beats):
            ready = int(rng.random() >= stall)
            ctx.set(dut.o.ready, ready)
            _, _, valid, out = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            cycles[0] += 1
            if valid and ready:
                got.append((out.y0.re, out.y0.im, out.y1.re, out.y1.im, out.last))
            assert cycles[0] < 20 * len(beats) + 100, "the PE stopped producing"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return got, cycles[0], dut


CONFIGS = {
    "default-16x16": ButterflyConfig(),
    "narrow-8x7": ButterflyConfig(width=8, twiddle_bits=7, n_max=64, lanes=2),
    "wide-18x18": ButterflyConfig(width=18, twiddle_bits=18),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_pe_matches_model_with_gaps_and_backpressure(name):
    cfg = CONFIGS[name]
    rng = random.Random(zlib.crc32(name.encode()))
    beats = _beats(cfg, 300, rng)
    want = _expected(cfg, beats)
    got, _, _ = _run(cfg, beats, seed=rng.randint(0, 1 << 30))
    assert len(got) == len(want)
    for n, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"beat {n}: {beats[n]}\n  rtl   {g}\n  model {w}"


@pytest.mark.parametrize("mode", [Mode.FFT, Mode.REAL])
def test_pe_extremes_each_mode(mode):
    """Every combination of extreme operands, in one mode, including saturating ones."""
    cfg = ButterflyConfig(width=8, twiddle_bits=8, n_max=64, lanes=2)
    lo, hi = cfg.data_min, cfg.data_max
    clo, chi = -(1 << (cfg.twiddle_bits - 1)), (1 << (cfg.twiddle_bits - 1)) - 1
    one = 1 << cfg.coef_frac
    beats = []
    for xa in (lo, hi, 0):
        for xb in (lo, hi):
            for ca, cb in ((clo, clo), (chi, clo), (one, 0), (-one, one), (chi, chi)):
                for shift in (cfg.SHIFT_MIN, 0, 1, cfg.SHIFT_MAX):
                    beats.append({"x0": {"re": xa, "im": xb}, "x1": {"re": xb, "im": xa},
                                  "coef": [ca, cb, cb, ca], "mode": mode, "shift": shift,
                                  "last": 0})
    beats[-1]["last"] = 1
    stats = {}
    want = _expected(cfg, beats)
    got, _, _ = _run(cfg, beats, seed=7, gap=0.2, stall=0.4)
    assert got == want
    # These operands do saturate (and the model counts it when asked).
    x0 = (np.array([b["x0"]["re"] for b in beats]), np.array([b["x0"]["im"] for b in beats]))
    x1 = (np.array([b["x1"]["re"] for b in beats]), np.array([b["x1"]["im"] for b in beats]))
    coef = [np.array([b["coef"][k] for b in beats]) for k in range(4)]
    shift = np.array([b["shift"] for b in beats])
    if mode == Mode.FFT:
        B.pe_fft(x0, x1, coef[:2], shift, cfg, stats)
    else:
        B.pe_real(x0[0], x1[0], coef, shift, cfg, stats)
    assert stats["saturated"] > 0


def test_pe_full_rate_and_latency():
    """Without gaps or backpressure: one butterfly per cycle, ``latency`` cycles deep."""
    cfg = ButterflyConfig()
    beats = _beats(cfg, 64, random.Random(3))
    got, cycles, dut = _run(cfg, beats, seed=1, gap=0, stall=0)
    assert got == _expected(cfg, beats)
    # The first beat enters at the first edge and leaves `latency` edges later.
    assert dut.latency == cfg.PE_LATENCY == 4
    assert cycles == len(beats) + dut.latency
    assert dut.multipliers == 4


def test_pe_layouts():
    cfg = ButterflyConfig()
    assert pe_input_layout(cfg).size == 4 * 16 + 4 * 16 + 1 + 3 + 1
    assert pe_output_layout(cfg).size == 4 * 16 + 1


FFT_ONLY = ButterflyConfig(linear=0)


@pytest.mark.parametrize("kmax, product, multipliers", [
    (0, "identity", 0), (1, "rotation", 0), (2, "three", 3), (6, "three", 3)])
def test_fft_only_pe_plans_match_model(kmax, product, multipliers):
    """An FFT-only PE (linear=0) takes the cheapest product for its column's twiddles and is
    still bit-exact with the model, under gaps and backpressure, extremes included."""
    cfg = FFT_ONLY
    table = column_twiddles(cfg, kmax)
    rng = random.Random(kmax)
    beats = _beats(cfg, 300, rng, modes=(Mode.FFT,))
    for beat in beats:
        beat["coef"] = list(fft_coefs(*rng.choice(table)))
    got, _, dut = _run(cfg, beats, seed=kmax, twiddles=table)
    assert (dut.product, dut.multipliers) == (product, multipliers)
    assert got == _expected(cfg, beats)


def test_pe_plans():
    """Two-mode PEs always use four multipliers; FFT-only ones three unless the twiddles are
    only 1 and −j."""
    one, minus_j = (1 << FFT_ONLY.coef_frac, 0), (0, -(1 << FFT_ONLY.coef_frac))
    assert ButterflyPE.plan(ButterflyConfig(), [one]) == "four"
    assert ButterflyPE.plan(FFT_ONLY) == "three"
    assert ButterflyPE.plan(FFT_ONLY, [one]) == "identity"
    assert ButterflyPE.plan(FFT_ONLY, [minus_j, one]) == "rotation"
    assert ButterflyPE.plan(FFT_ONLY, [one, (0, 1 << FFT_ONLY.coef_frac)]) == "three"
    assert ButterflyConfig(linear=0).array_multipliers == 96
    assert ButterflyConfig(linear=1).array_multipliers == 160
