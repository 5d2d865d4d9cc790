"""The engine's documented clamp of k to [1, N], in Amaranth's simulator.

The CLI and the testbenches reject k outside [1, N] before it reaches the hardware, so
this is the only check that the RTL itself keeps one score for k = 0 and all N for k > N.
"""

import numpy as np
from amaranth.sim import Simulator

from attnforge.configs.topk import TopKConfig
from attnforge.rtl.topk import TopK
from attnforge.sim import topk as model

SMALL = TopKConfig(width=8, n_max=64, lanes=2, comparators=4)


def test_k_is_clamped_to_one_and_n():
    rng = np.random.default_rng(3)
    # (scores, k sent, k the engine must use): k = 0, k > N, a one-beat vector, and k in range.
    cases = [(rng.integers(-128, 128, 16), 0, 1),
             (rng.integers(-128, 128, 16), 40, 16),
             (rng.integers(-128, 128, 2), 0, 1),
             (rng.integers(-128, 128, 2), 127, 2),
             (rng.integers(-128, 128, 8), 3, 3)]
    dut = TopK(SMALL)
    got = []

    async def feed(ctx):
        for scores, k, _ in cases:
            beats = scores.reshape(-1, SMALL.lanes)
            for n, beat in enumerate(beats):
                ctx.set(dut.i.valid, 1)
                for lane, value in enumerate(beat):
                    ctx.set(dut.i.payload.scores[lane], int(value))
                ctx.set(dut.i.payload.k, k)
                ctx.set(dut.i.payload.last, n == len(beats) - 1)
                await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def collect(ctx):
        ctx.set(dut.o.ready, 1)
        indices = []
        while len(got) < len(cases):
            valid, count, last = ctx.get(dut.o.valid), ctx.get(dut.o.payload.count), ctx.get(dut.o.payload.last)
            beat = [ctx.get(dut.o.payload.indices[n]) for n in range(count)]
            await ctx.tick()
            if valid:
                indices += beat
                if last:
                    got.append(indices)
                    indices = []

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feed)
    sim.add_testbench(collect)
    sim.run_until(3000e-6)
    assert len(got) == len(cases)
    for (scores, sent, used), indices in zip(cases, got):
        want = np.flatnonzero(model.topk_mask(scores, used))
        assert indices == want.tolist(), (sent, used, indices, want)
