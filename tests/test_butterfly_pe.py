"""The butterfly PE (rtl/butterfly/pe.py) in Amaranth's simulator, bit for bit against sim/butterfly.py."""

import dataclasses
import random
import zlib

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator

from attnforge.configs.butterfly import ButterflyConfig
from attnforge.rtl.butterfly import ButterflyPE, Mode, pe_input_layout, pe_output_layout
from attnforge.rtl.butterfly.array import column_twiddles
from attnforge.rtl.butterfly.pe import csd_digits, fft_coefs
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
    assert dut.latency == cfg.PE_LATENCY == 6
    assert cycles == len(beats) + dut.latency
    assert dut.multipliers == 4


def test_pe_layouts():
    cfg = ButterflyConfig()
    assert pe_input_layout(cfg).size == 4 * 16 + 4 * 16 + 1 + 3 + 1
    assert pe_output_layout(cfg).size == 4 * 16 + 1


FFT_ONLY = ButterflyConfig(linear=0)


def _table_beats(cfg, table, count, rng, product):
    """FFT beats over ``table``: the model's (``coef`` the twiddle's :func:`fft_coefs`) and the
    PE's (the index, for the table-driven plans). Random operands, then every twiddle with
    every full-scale x1 (±max, the most negative value) and x0."""
    lo, hi = cfg.data_min, cfg.data_max
    beats = _beats(cfg, count, rng, modes=(Mode.FFT,))
    idxs = [rng.randrange(len(table)) for _ in beats]
    for idx in range(len(table)):
        for x1 in ((lo, lo), (lo, hi), (hi, lo), (hi, hi), (lo, 0), (0, lo), (lo + 1, hi)):
            for x0 in ((lo, hi), (hi, lo), (0, 0)):
                beats.append({"x0": {"re": x0[0], "im": x0[1]}, "x1": {"re": x1[0], "im": x1[1]},
                              "coef": [0] * 4, "mode": Mode.FFT,
                              "shift": rng.randint(cfg.SHIFT_MIN, cfg.SHIFT_MAX), "last": 0})
                idxs.append(idx)
    beats[-1]["last"] = 1
    model, dut = [], []
    for beat, idx in zip(beats, idxs):
        coef = list(fft_coefs(*table[idx]))
        model.append({**beat, "coef": coef})
        dut.append({**beat, "coef": [idx, 0, 0, 0] if product in ButterflyPE.INDEXED else coef})
    return model, dut


@pytest.mark.parametrize("kmax, product, multipliers", [
    (0, "identity", 0), (1, "rotation", 0), (2, "constants", 0), (3, "constants", 0),
    (4, "three", 3), (6, "three", 3)])
def test_fft_only_pe_plans_match_model(kmax, product, multipliers):
    """An FFT-only PE (linear=0) takes the cheapest product for its column's twiddles and is
    still bit-exact with the model, under gaps and backpressure, extremes included."""
    cfg = FFT_ONLY
    table = column_twiddles(cfg, kmax)
    rng = random.Random(kmax)
    model, dut_beats = _table_beats(cfg, table, 300, rng, product)
    got, _, dut = _run(cfg, dut_beats, seed=kmax, twiddles=table)
    assert (dut.product, dut.multipliers) == (product, multipliers)
    assert got == _expected(cfg, model)


@pytest.mark.parametrize("name", ["narrow-8x7", "wide-18x18"])
def test_constants_plan_other_formats(name):
    """The shift-and-add products at the narrowest and widest formats (the W16 column: 3
    magnitudes, up to 7 nonzero digits at 18 bits), bit-exact with the model."""
    cfg = dataclasses.replace(CONFIGS[name], linear=0)
    table = column_twiddles(cfg, 3)
    rng = random.Random(name)
    model, dut_beats = _table_beats(cfg, table, 100, rng, "constants")
    got, _, dut = _run(cfg, dut_beats, seed=5, twiddles=table)
    assert dut.product == "constants"
    assert got == _expected(cfg, model)


def test_csd_digits():
    """Every value reconstructs exactly from digits in {−1, 0, 1}, no two adjacent nonzero,
    and never more nonzero digits than its binary form; twiddle magnitudes included."""
    values = list(range(-3000, 3001)) + [(1 << 17) - 1, 1 << 17, -(1 << 17)]
    for bits in (7, 16, 18):
        cfg = ButterflyConfig(twiddle_bits=bits)
        values += [abs(v) for k in range(16) for v in cfg.twiddle(k, 32)]
    for value in values:
        digits = csd_digits(value)
        assert sum(d << k for k, d in enumerate(digits)) == value
        assert set(digits) <= {-1, 0, 1} and (not digits or digits[-1] != 0)
        assert all(not (a and b) for a, b in zip(digits, digits[1:])), (value, digits)
        assert sum(map(abs, digits)) <= bin(abs(value)).count("1")
    assert csd_digits(0) == [] and csd_digits(7) == [-1, 0, 0, 1] and csd_digits(-3) == [1, 0, -1]


def test_pe_plans():
    """Two-mode PEs always use four multipliers; FFT-only ones none for 1 and −j only or for a
    few constant magnitudes (the W8, W16 columns), three otherwise."""
    one, minus_j = (1 << FFT_ONLY.coef_frac, 0), (0, -(1 << FFT_ONLY.coef_frac))
    assert ButterflyPE.plan(ButterflyConfig(), [one]) == "four"
    assert ButterflyPE.plan(ButterflyConfig(), column_twiddles(FFT_ONLY, 2)) == "four"
    assert ButterflyPE.plan(FFT_ONLY) == "three"
    assert ButterflyPE.plan(FFT_ONLY, [one]) == "identity"
    assert ButterflyPE.plan(FFT_ONLY, [minus_j, one]) == "rotation"
    assert ButterflyPE.plan(FFT_ONLY, [one, (0, 1 << FFT_ONLY.coef_frac)]) == "three"
    assert [ButterflyPE.plan(FFT_ONLY, column_twiddles(FFT_ONLY, k)) for k in range(6)] == \
        ["identity", "rotation", "constants", "constants", "three", "three"]
    assert ButterflyConfig(linear=0).array_multipliers == 72
    assert ButterflyConfig(linear=1).array_multipliers == 160


def test_three_plan_at_width_18():
    """``x1.re + x1.im`` is 19 bits at width 18: that product is built in the fabric with the
    same three registers, still bit-exact and ``PE_LATENCY`` deep."""
    cfg = dataclasses.replace(CONFIGS["wide-18x18"], linear=0)
    table = column_twiddles(cfg, 6)
    model, dut_beats = _table_beats(cfg, table, 100, random.Random(18), "three")
    got, _, dut = _run(cfg, dut_beats, seed=18, twiddles=table)
    assert (dut.product, dut.latency) == ("three", cfg.PE_LATENCY)
    assert got == _expected(cfg, model)


class _ECP5:
    """Just enough of an ECP5 platform for rtl/dsp.multiply to pick MULT18X18D cells."""
    family = "ecp5"


@pytest.mark.parametrize("cfg, kmax, cells", [
    (ButterflyConfig(), None, 4), (FFT_ONLY, 6, 3), (FFT_ONLY, 3, 0),
    (ButterflyConfig(width=18, twiddle_bits=18, linear=0), 6, 2)])
def test_pe_multipliers_are_dsp_cells_with_their_registers(cfg, kmax, cells):
    """On an ECP5 each product is a MULT18X18D with registered inputs and output (Yosys
    packs no fabric flip-flop into one); the 19-bit operand of a width-18 ``"three"`` PE
    stays in the fabric."""
    twiddles = None if kmax is None else column_twiddles(cfg, kmax)
    text = rtlil.convert(ButterflyPE(cfg, twiddles=twiddles), platform=_ECP5())
    assert text.count("cell \\MULT18X18D") == cells
    for reg in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK"):
        assert text.count(f'parameter \\{reg} "CLK0"') == cells
