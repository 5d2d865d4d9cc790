# amaranth: UnusedElaboratable=no
"""The streaming FFT array (rtl/butterfly/array.py) in Amaranth's simulator, bit for bit
against sim/butterfly.py's fixed-point FFT.

Every run drives transforms back to back; most with random valid gaps and random ready
backpressure. Cycle counts are printed (run with ``-s``); no speed is asserted (``attnforge
bench`` measures), but full-rate runs check that the cycle model
(:func:`attnforge.sim.butterfly.fft_array_cycles`) replays them exactly.
"""

import random

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator

from attnforge.configs.butterfly import ButterflyConfig
from attnforge.rtl.butterfly.array import ButterflyArray, input_beat, output_beat
from attnforge.sim import butterfly as B


def _frames(cfg, rng, sizes, kind="random"):
    """``(log2n, re, im)`` per transform: full-scale random, or a documented edge case."""
    frames = []
    for n in sizes:
        if kind == "random":
            re = rng.integers(cfg.data_min, cfg.data_max + 1, n)
            im = rng.integers(cfg.data_min, cfg.data_max + 1, n)
        elif kind == "extremes":
            re = rng.choice([cfg.data_min, cfg.data_max, 0, -1, 1], n)
            im = rng.choice([cfg.data_min, cfg.data_max, 0, -1, 1], n)
        else:
            raise ValueError(kind)
        frames.append((n.bit_length() - 1, re, im))
    return frames


def _run(cfg, frames, *, seed=0, gap=0.0, stall=0.0, idle=(), bad_last=()):
    """Stream ``frames`` through the array with random valid gaps and ready backpressure.

    ``idle``: indices of frames before which the input stays idle for a while (the array
    must finish the earlier transforms on its own). ``bad_last``: indices of frames sent
    without ``last`` on their final beat.

    Returns
    -------
    outs : list of (re, im) int arrays, one per transform (split at ``last``)
    stamps : dict
        ``"first_in"``: the cycle (clock edge, from 0) of each transform's first input
        handshake; ``"last_out"``: of its last output handshake; ``"error"``: the final
        value of the error flag.
    """
    dut = ButterflyArray(cfg)
    P = cfg.lanes
    rng = random.Random(seed)
    total = sum(len(re) for _, re, _ in frames) // P
    outs, cur = [], []
    stamps = {"first_in": [], "last_out": [], "error": None}

    async def producer(ctx):
        for f, (log2n, re, im) in enumerate(frames):
            if f in idle:
                ctx.set(dut.i.valid, 0)
                await ctx.tick().repeat(3 * len(re) // P + 40)
            nbeats = len(re) // P
            for t in range(nbeats):
                while gap and rng.random() < gap:
                    ctx.set(dut.i.valid, 0)
                    await ctx.tick()
                ctx.set(dut.i.payload, {
                    "data": [{"re": int(re[t * P + l]), "im": int(im[t * P + l])}
                             for l in range(P)],
                    "log2n": log2n,
                    "last": int(t == nbeats - 1 and f not in bad_last),
                })
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        got = 0
        cycle = 0
        in_beat = 0
        beats = [len(re) // P for _, re, _ in frames]
        limit = 40 * total + 60 * cfg.n_max // P + 400
        while got < total:
            ready = int(not stall or rng.random() >= stall)
            ctx.set(dut.o.ready, ready)
            _, _, iv, ir, ov, out = await ctx.tick().sample(
                dut.i.valid, dut.i.ready, dut.o.valid, dut.o.payload)
            if iv and ir:
                if in_beat == 0:
                    stamps["first_in"].append(cycle)
                in_beat += 1
                if in_beat == beats[len(stamps["first_in"]) - 1]:
                    in_beat = 0
            if ov and ready:
                got += 1
                cur.extend((out.data[l].re, out.data[l].im) for l in range(P))
                if out.last:
                    outs.append((np.array([c[0] for c in cur]), np.array([c[1] for c in cur])))
                    stamps["last_out"].append(cycle)
                    cur.clear()
            cycle += 1
            assert cycle < limit, f"the array stopped producing ({got} of {total} beats)"
        stamps["error"] = ctx.get(dut.error)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return outs, stamps


def _check(cfg, frames, outs):
    assert len(outs) == len(frames), f"{len(outs)} transforms out, {len(frames)} in"
    for f, ((log2n, re, im), (gr, gi)) in enumerate(zip(frames, outs)):
        wr, wi, scale = B.fft(re, im, cfg)
        assert int(scale) == log2n
        assert len(gr) == len(wr), f"transform {f}: {len(gr)} samples out, N = {len(wr)}"
        bad = np.flatnonzero((gr != wr) | (gi != wi))
        assert bad.size == 0, (f"transform {f} (N={len(re)}): {bad.size} bins differ, first "
                               f"{bad[:8].tolist()}: rtl {gr[bad[:4]]}+j{gi[bad[:4]]} model "
                               f"{wr[bad[:4]]}+j{wi[bad[:4]]}")


def _report(cfg, frames, stamps, title):
    """Print measured cycles per transform and the cycle model's; return the model's."""
    lengths = [len(re) for _, re, _ in frames]
    model = B.fft_array_cycles(lengths, cfg)
    first, last = np.array(stamps["first_in"]), np.array(stamps["last_out"])
    spacing = np.diff(last)
    print(f"\n{title}: lanes={cfg.lanes} n_max={cfg.n_max} N={lengths}\n"
          f"  latency (first in .. last out)  rtl {(last - first + 1).tolist()}  "
          f"model {model['latency'].tolist()}\n"
          f"  cycles between transforms' last beats {spacing.tolist()} "
          f"(N/lanes = {[n // cfg.lanes for n in lengths[1:]]}); "
          f"total {last[-1] - first[0] + 1} (model {model['total']})")
    return model


# -- bit-exact, back to back, random gaps and backpressure ------------------------------------


@pytest.mark.parametrize("lanes,n", [(2, 8), (4, 8), (4, 16), (8, 16), (2, 32), (4, 32),
                                     (8, 32), (4, 64), (8, 64)])
def test_fft_matches_model_with_gaps_and_backpressure(lanes, n):
    cfg = ButterflyConfig(n_max=n, lanes=lanes)
    rng = np.random.default_rng(lanes * 1000 + n)
    frames = _frames(cfg, rng, [n] * 3)
    outs, stamps = _run(cfg, frames, seed=lanes + n, gap=0.3, stall=0.3)
    _check(cfg, frames, outs)
    assert stamps["error"] == 0


@pytest.mark.parametrize("lanes,n", [(2, 16), (4, 32), (8, 64)])
def test_full_rate_throughput(lanes, n):
    """No gaps, no backpressure: a transform every N/lanes cycles (printed, and the cycle
    model must replay the run exactly)."""
    cfg = ButterflyConfig(n_max=n, lanes=lanes)
    rng = np.random.default_rng(n + lanes)
    frames = _frames(cfg, rng, [n] * 5)
    outs, stamps = _run(cfg, frames)
    _check(cfg, frames, outs)
    model = _report(cfg, frames, stamps, "full rate")
    assert stamps["first_in"] == model["first_in"].tolist()
    assert stamps["last_out"] == model["last_out"].tolist()


def test_saturating_extremes():
    """Full-scale extremes (complex magnitudes beyond the documented no-saturation bound):
    the array saturates exactly where the model does."""
    cfg = ButterflyConfig(n_max=32, lanes=4)
    rng = np.random.default_rng(9)
    frames = _frames(cfg, rng, [32] * 3, "extremes")
    frames.append((5, np.full(32, cfg.data_max), np.full(32, cfg.data_min)))
    square = np.where(np.arange(32) % 2 == 0, cfg.data_max, cfg.data_min)
    frames.append((5, square, square[::-1].copy()))
    stats = {}
    for _, re, im in frames:
        B.fft(re, im, cfg, stats=stats)
    assert stats["saturated"] > 0
    outs, _ = _run(cfg, frames, seed=4, gap=0.2, stall=0.4)
    _check(cfg, frames, outs)


def test_narrow_formats():
    cfg = ButterflyConfig(width=8, twiddle_bits=7, n_max=32, lanes=4)
    rng = np.random.default_rng(2)
    frames = _frames(cfg, rng, [32, 32]) + _frames(cfg, rng, [32], "extremes")
    outs, _ = _run(cfg, frames, seed=1, gap=0.3, stall=0.3)
    _check(cfg, frames, outs)


# -- run-time transform length ---------------------------------------------------------------


@pytest.mark.parametrize("lanes", [2, 4, 8])
def test_mixed_lengths_with_gaps_backpressure_and_idle(lanes):
    cfg = ButterflyConfig(n_max=64, lanes=lanes)
    rng = np.random.default_rng(lanes)
    sizes = [64, 8, 8, 32, 16, 64, 64, lanes, 32, lanes, 16]
    frames = _frames(cfg, rng, sizes)
    outs, stamps = _run(cfg, frames, seed=lanes, gap=0.3, stall=0.3, idle=(3, 7))
    _check(cfg, frames, outs)
    assert stamps["error"] == 0


@pytest.mark.parametrize("sizes", [[64, 64, 8, 8, 8, 32, 4, 4, 16, 64],
                                   [4, 8, 16, 32, 64, 32, 16, 8, 4]], ids=["mixed", "up-down"])
def test_mixed_lengths_full_rate(sizes):
    """Length changes at full rate (growing ones bring the return exchange's longer delay
    back into use): bit-exact, and the cycle model replays the drains exactly."""
    cfg = ButterflyConfig(n_max=64, lanes=4)
    rng = np.random.default_rng(len(sizes))
    frames = _frames(cfg, rng, sizes)
    outs, stamps = _run(cfg, frames)
    _check(cfg, frames, outs)
    model = _report(cfg, frames, stamps, "mixed lengths, full rate")
    assert stamps["first_in"] == model["first_in"].tolist()
    assert stamps["last_out"] == model["last_out"].tolist()


def test_one_beat_transforms():
    """``n_max = lanes``: every stage is inside a beat (no exchanges)."""
    cfg = ButterflyConfig(n_max=8, lanes=8)
    rng = np.random.default_rng(8)
    frames = _frames(cfg, rng, [8] * 6)
    outs, stamps = _run(cfg, frames, seed=8, gap=0.3, stall=0.3)
    _check(cfg, frames, outs)
    outs, stamps = _run(cfg, frames)
    _check(cfg, frames, outs)
    _report(cfg, frames, stamps, "one-beat transforms")


def test_error_flag_and_recovery():
    """A missing ``last`` sets ``error``; the count ends the transform and the next is exact.
    An out-of-range ``log2n`` is clamped (and flagged)."""
    cfg = ButterflyConfig(n_max=32, lanes=4)
    rng = np.random.default_rng(3)
    frames = _frames(cfg, rng, [16, 32])
    outs, stamps = _run(cfg, frames, seed=2, gap=0.2, stall=0.2, bad_last=(0,))
    _check(cfg, frames, outs)
    assert stamps["error"] == 1
    outs, stamps = _run(cfg, frames, seed=2)
    assert stamps["error"] == 0
    # log2n = 7 > log2(n_max) = 5 is clamped to 5; log2n = 1 < log2(lanes) = 2 to 2.
    for sent, meant, n in ((7, 5, 32), (1, 2, 4)):
        frames = _frames(cfg, rng, [n, n])
        outs, stamps = _run(cfg, [(sent, re, im) for _, re, im in frames])
        _check(cfg, frames, outs)
        assert frames[0][0] == meant and stamps["error"] == 1


def test_counts_and_layouts():
    cfg = ButterflyConfig(n_max=1024, lanes=8)
    dut = ButterflyArray(cfg)
    assert dut.pes == 4 * 10 and dut.multipliers == 160
    assert [c.kind for c in dut.schedule.columns] == ["time"] * 7 + ["return", "lane", "lane"]
    assert input_beat(cfg).size == 8 * 32 + 4 + 1 + 1      # data, log2n, mode, last
    assert output_beat(cfg).size == 8 * 32 + 1
    with pytest.raises(ValueError, match="lanes=1"):
        ButterflyArray(ButterflyConfig(n_max=64, lanes=1))
    # the PEs' multipliers add up to the config's formula (FFT-only: 3 per PE, none in the
    # first four columns)
    assert ButterflyArray(ButterflyConfig(n_max=1024, lanes=8, linear=0)).multipliers == 72
    for lanes, n_max in ((2, 8), (4, 256), (8, 1024), (16, 64)):
        for linear in (0, 1):
            cfg = ButterflyConfig(lanes=lanes, n_max=n_max, linear=linear)
            assert ButterflyArray(cfg).multipliers == cfg.array_multipliers, cfg


def test_converts_to_rtlil():
    """The netlist is legal (one driver per signal, memories well formed) for a mid size."""
    text = rtlil.convert(ButterflyArray(ButterflyConfig(n_max=64, lanes=4)))
    assert "module" in text and "memrd" in text


def test_fft_only_array():
    """``linear=0``: no weight port or bit-reversal buffer; FFTs as before (cycle model
    exact at full rate), with gaps and backpressure."""
    cfg = ButterflyConfig(n_max=32, lanes=4, linear=0)
    assert "w" not in ButterflyArray(cfg).signature.members
    rng = np.random.default_rng(12)
    frames = _frames(cfg, rng, [32, 8, 32, 16])
    outs, stamps = _run(cfg, frames)
    _check(cfg, frames, outs)
    model = _report(cfg, frames, stamps, "linear=0")
    assert stamps["last_out"] == model["last_out"].tolist() and stamps["error"] == 0
    outs, stamps = _run(cfg, frames, seed=3, gap=0.3, stall=0.3)
    _check(cfg, frames, outs)
