"""Zero eliminator and packer (rtl/compact.py) in Amaranth's simulator against plain Python."""

import random

import pytest
from amaranth.hdl import signed, unsigned
from amaranth.lib import data
from amaranth.sim import Simulator

from attnforge.rtl.compact import Packer, ZeroEliminator

ENTRY = data.StructLayout({"value": signed(8), "index": unsigned(6)})


def _random_value(shape, rng):
    if shape is ENTRY:
        return {"value": rng.randrange(-128, 128), "index": rng.randrange(64)}
    return rng.randrange(-128, 128)


def _run(dut, feed, collect, cycles=4000):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feed)
    sim.add_testbench(collect)
    sim.run_until(cycles * 1e-6)


def _get(ctx, view, shape):
    if shape is ENTRY:
        return {"value": ctx.get(view.value), "index": ctx.get(view.index)}
    return ctx.get(view)


@pytest.mark.parametrize("shape", [signed(8), ENTRY], ids=["signed", "struct"])
def test_zero_eliminator_keeps_order(shape):
    rng = random.Random(3)
    width = 8
    dut = ZeroEliminator(shape, width)
    beats = [([_random_value(shape, rng) for _ in range(width)], rng.getrandbits(width), rng.random() < 0.2)
             for _ in range(200)]
    got = []

    async def feed(ctx):
        for values, keep, last in beats:
            ctx.set(dut.i.valid, rng.random() < 0.8)
            while not ctx.get(dut.i.valid):
                await ctx.tick()
                ctx.set(dut.i.valid, rng.random() < 0.8)
            for n, value in enumerate(values):
                ctx.set(dut.i.payload.data[n], value)
            ctx.set(dut.i.payload.keep, keep)
            ctx.set(dut.i.payload.last, last)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def collect(ctx):
        while len(got) < len(beats):
            ready = rng.random() < 0.7
            ctx.set(dut.o.ready, ready)
            valid, count, last = ctx.get(dut.o.valid), ctx.get(dut.o.payload.count), ctx.get(dut.o.payload.last)
            values = [_get(ctx, dut.o.payload.data[n], shape) for n in range(count)]
            await ctx.tick()
            if ready and valid:
                got.append((values, last))

    _run(dut, feed, collect)
    want = [([v for n, v in enumerate(values) if keep >> n & 1], last) for values, keep, last in beats]
    assert got == want


@pytest.mark.parametrize("shape, width_in, width_out, always_ready, options", [
    (signed(8), 8, 4, False, {}), (ENTRY, 8, 2, False, {}), (signed(8), 4, 4, False, {}),
    (signed(8), 8, 8, True, {}), (ENTRY, 8, 4, False, {"depth": 32, "output_register": True}),
], ids=["signed-8to4", "struct-8to2", "signed-4to4", "always-ready", "deep-registered"])
def test_packer_joins_beats_per_vector(shape, width_in, width_out, always_ready, options):
    rng = random.Random(width_in * 10 + width_out)
    dut = Packer(shape, width_in, width_out, always_ready=always_ready, **options)
    vectors = []
    for _ in range(25):
        beats = [[_random_value(shape, rng) for _ in range(rng.choice([0, 0, 1, width_in, rng.randrange(width_in + 1)]))]
                 for _ in range(rng.randrange(1, 6))]
        if not any(beats):
            beats[0] = [_random_value(shape, rng)]
        vectors.append(beats)
    got = []

    async def feed(ctx):
        for beats in vectors:
            for n, values in enumerate(beats):
                ctx.set(dut.i.valid, 1)
                for lane, value in enumerate(values):
                    ctx.set(dut.i.payload.data[lane], value)
                ctx.set(dut.i.payload.count, len(values))
                ctx.set(dut.i.payload.last, n == len(beats) - 1)
                await ctx.tick().until(dut.i.ready)
                ctx.set(dut.i.valid, 0)
                if always_ready and n == len(beats) - 1:
                    await ctx.tick().repeat(4)      # the documented gap after a vector
                elif rng.random() < 0.3:
                    await ctx.tick()

    async def collect(ctx):
        words = []
        while len(got) < len(vectors):
            ready = always_ready or rng.random() < 0.6
            ctx.set(dut.o.ready, ready)
            valid, count, last = ctx.get(dut.o.valid), ctx.get(dut.o.payload.count), ctx.get(dut.o.payload.last)
            values = [_get(ctx, dut.o.payload.data[n], shape) for n in range(count)]
            await ctx.tick()
            if ready and valid:
                words.append(values)
                if last:
                    got.append(words)
                    words = []

    _run(dut, feed, collect)
    for beats, words in zip(vectors, got):
        flat = [v for beat in beats for v in beat]
        assert [v for word in words for v in word] == flat
        assert all(len(word) == width_out for word in words[:-1])     # dense but for the last
        assert 1 <= len(words[-1]) <= width_out

