# amaranth: UnusedElaboratable=no
"""The butterfly FFN (rtl/butterfly/ffn.py) in Amaranth's simulator, bit for bit against
sim/butterfly.ffn; and the chained schedule its second array runs.

Weights first through the one weight stream (with gaps), then rows back to back with random
valid gaps and ready backpressure. The generated Verilog is tested under cocotb in
tests/test_butterfly_rtl.py.
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from attnforge.configs.butterfly import ButterflyConfig
from attnforge.rtl.butterfly.ffn import ButterflyFFN
from attnforge.rtl.butterfly.schedule import ArraySchedule
from attnforge.sim import butterfly as B
from attnforge.tb.butterfly import FFN, random_twiddle

CFG = ButterflyConfig(width=16, twiddle_bits=16, n_max=32, lanes=4)


def _run(cfg, ffn, rows, *, seed=0, gap=0.0, stall=0.0, phases=None):
    """Write ``ffn``'s weights, stream ``rows`` (int B×N); return the output rows, the cycle
    of each row's first input and last output handshake, and the error flag.

    ``phases``: instead, a list of ``(ffn, rows)``: each phase's weights are written right
    after the previous phase's last row went in (while its rows are still in the arrays).
    """
    dut = ButterflyFFN(cfg)
    phases = phases or [(ffn, rows)]
    P, n = cfg.lanes, phases[0][1].shape[1]
    rng = random.Random(seed)
    total = sum(r.size for _, r in phases) // P
    outs, cur, stamps = [], [], {"first_in": [], "last_out": []}

    async def producer(ctx):
        for ffn, rows in phases:
            await write(ctx, ffn.writes)
            await send(ctx, rows)
        ctx.set(dut.i.valid, 0)

    async def write(ctx, writes):
        for k in range(len(writes["w_pe"])):
            while gap and rng.random() < gap:
                ctx.set(dut.w.valid, 0)
                await ctx.tick()
            ctx.set(dut.w.payload, {
                "layer": int(writes["w_layer"][k]), "column": int(writes["w_column"][k]),
                "pe": int(writes["w_pe"][k]), "addr": int(writes["w_addr"][k]),
                "coef": [int(v) for v in writes["w_coef"][k]],
                "shift": int(writes["w_shift"][k])})
            ctx.set(dut.w.valid, 1)
            await ctx.tick().until(dut.w.ready)
        ctx.set(dut.w.valid, 0)

    async def send(ctx, rows):
        for row in rows:
            for t in range(n // P):
                while gap and rng.random() < gap:
                    ctx.set(dut.i.valid, 0)
                    await ctx.tick()
                ctx.set(dut.i.payload, {"data": [int(v) for v in row[t * P:(t + 1) * P]],
                                        "log2n": n.bit_length() - 1,
                                        "last": int(t == n // P - 1)})
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        while True:
            ctx.set(dut.o.ready, int(not stall or rng.random() >= stall))
            await ctx.tick()

    async def monitor(ctx):
        """Every handshake with its cycle: rows' first input beats, output beats."""
        cycle, in_beat, got = 0, 0, 0
        limit = 60 * total + 80 * cfg.n_max // P + 2000
        async for _, _, i_go, i_ok, o_go, o_ok, out in ctx.tick().sample(
                dut.i.valid, dut.i.ready, dut.o.valid, dut.o.ready, dut.o.payload):
            if i_go and i_ok:
                stamps["first_in"] += [cycle] if in_beat == 0 else []
                in_beat = (in_beat + 1) % (n // P)
            if o_go and o_ok:
                got += 1
                cur.extend(out.data[lane] for lane in range(P))
                if out.last:
                    outs.append(np.array(cur))
                    stamps["last_out"].append(cycle)
                    cur.clear()
            cycle += 1
            if got == total:
                break
            assert cycle < limit, f"the FFN stopped producing ({got} of {total} beats)"
        stamps["error"] = ctx.get(dut.error)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(sink, background=True)
    sim.add_testbench(monitor)
    sim.run()
    return outs, stamps


def _check(cfg, ffn, rows, outs, stamps):
    assert stamps["error"] == 0
    want, scale = ffn.model(rows, cfg)
    assert len(outs) == len(rows)
    for r, (got, exp) in enumerate(zip(outs, want)):
        bad = np.flatnonzero(got != exp)
        assert bad.size == 0, (f"row {r}: {bad.size} outputs differ, first {bad[:8].tolist()}: "
                               f"rtl {got[bad[:4]].tolist()} model {exp[bad[:4]].tolist()}")
    assert np.all(scale == ffn.scale_log2)


@pytest.mark.parametrize("lanes,n_max,n", [(4, 32, 32), (4, 32, 16), (2, 16, 16), (4, 64, 64),
                                           (8, 32, 32), (4, 32, 8), (4, 32, 4)])
def test_ffn_matches_model_with_gaps_and_backpressure(lanes, n_max, n):
    cfg = ButterflyConfig(width=16, twiddle_bits=16, n_max=n_max, lanes=lanes)
    rng = np.random.default_rng([lanes, n_max, n])
    rows = rng.integers(cfg.data_min, cfg.data_max + 1, (5, n))
    rows[1] = rng.choice([cfg.data_min, cfg.data_max, 0, -1, 1], n)
    ffn = FFN(random_twiddle(n, rng), random_twiddle(n, rng), cfg, x=rows)
    outs, stamps = _run(cfg, ffn, rows, seed=n, gap=0.3, stall=0.3)
    _check(cfg, ffn, rows, outs, stamps)


def test_weights_rewritten_while_rows_are_in_flight():
    """A second set of weights (both layers) sent right after the first batch's last row:
    it is taken only once the arrays are empty, so each batch sees its own weights."""
    cfg, n = CFG, 32
    rng = np.random.default_rng(4)
    phases = []
    for _ in range(2):
        rows = rng.integers(cfg.data_min, cfg.data_max + 1, (3, n))
        phases.append((FFN(random_twiddle(n, rng), random_twiddle(n, rng), cfg, x=rows), rows))
    outs, stamps = _run(cfg, None, None, seed=5, gap=0.2, stall=0.2, phases=phases)
    _check(cfg, phases[0][0], phases[0][1], outs[:3], stamps)
    _check(cfg, phases[1][0], phases[1][1], outs[3:], stamps)


@pytest.mark.parametrize("lanes,n_max,n", [(4, 32, 32), (4, 32, 16), (4, 32, 8), (2, 16, 4),
                                           (8, 16, 16), (8, 16, 8)])
def test_ffn_full_rate_cycles_are_the_cycle_model(lanes, n_max, n):
    """Rows back to back at full rate: every row's cycles are sim/butterfly.ffn_cycles'."""
    cfg = ButterflyConfig(width=16, twiddle_bits=16, n_max=n_max, lanes=lanes)
    rng = np.random.default_rng(3)
    rows = rng.integers(cfg.data_min, cfg.data_max + 1, (6, n))
    ffn = FFN(random_twiddle(n, rng), random_twiddle(n, rng), cfg, x=rows)
    outs, stamps = _run(cfg, ffn, rows)
    _check(cfg, ffn, rows, outs, stamps)
    first, last = np.array(stamps["first_in"]), np.array(stamps["last_out"])
    timing = B.ffn_cycles(len(rows), n, cfg)
    print(f"\nFFN N={n} lanes={lanes} n_max={n_max}: latency {(last - first + 1).tolist()}, "
          f"model {timing['latency'].tolist()}")
    assert np.array_equal(first - first[0], timing["first_in"] - timing["first_in"][0])
    assert np.array_equal(last - first + 1, timing["latency"])


def test_chained_pipeline_counts_the_chained_schedule():
    """sim/butterfly.chained_array_pipeline (no rtl import) against the schedule's plan."""
    for lanes in (2, 4, 8, 16):
        for log2max in range(lanes.bit_length() - 1, 12):
            cfg = ButterflyConfig(n_max=1 << log2max, lanes=lanes)
            sched = ArraySchedule(lanes, cfg.n_max, chained=True)
            column = cfg.COLUMN_LATENCY
            for log2n in sched.log2n_range:
                regs = 1 + sum(((1 << plan.exchange) if plan.exchange is not None else 0) + column
                               if plan.active else 1 for plan in sched.plan(log2n))
                assert B.chained_array_pipeline(1 << log2n, cfg) == regs, (lanes, log2max, log2n)


def test_chained_schedule_takes_the_plain_final_order():
    """The chained array's columns start from the plain array's final slot map and run every
    stage; below 4·lanes the two schedules are the same."""
    for lanes, n_max in ((2, 16), (4, 32), (4, 128), (8, 1024)):
        plain, chained = ArraySchedule(lanes, n_max), ArraySchedule(lanes, n_max, chained=True)
        assert chained.chained and len(chained.columns) == plain.log2n_max
        assert [c.kind for c in chained.columns].count("top") == 1
        for log2n in chained.log2n_range:
            assert chained.input_map(log2n) == plain.final_map(log2n)
            assert sorted(p.stage for p in chained.plan(log2n) if p.active) == list(range(log2n))
    small = ArraySchedule(4, 8, chained=True)
    assert not small.chained and small.columns == ArraySchedule(4, 8).columns
