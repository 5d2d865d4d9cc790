"""The AXI4 read fetcher (rtl/fetch.py) in Amaranth's simulator against a Python AXI RAM that
answers with random latency, random AR acceptance and random R-channel stalls: the rows of
the listed keys of either plane, in order, bit for bit from sim/qk.py's memory image; bursts
within AXI4's rules (≤ max_burst beats, never across 4 KB); byte counters."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from attnforge.configs.qk import QKConfig
from attnforge.rtl.fetch import LSB, MSB, Fetcher
from attnforge.sim import qk

#: where the memory image starts: beat aligned, so 4 KB boundaries fall inside rows
OFFSET = 0x2FC0


def run(cfg, keys, requests, *, seed, max_burst=16, outstanding=4, stall=0.3, latency=(1, 12),
        ar_ready=0.6, o_ready=0.7, gap=0.2, r_edges=None):
    """``requests``: a list of (plane, indices). Returns the rows, the bursts and the counters."""
    layout = qk.plane_layout(len(keys), cfg)
    image = bytes(OFFSET) + qk.memory_image(keys, cfg)
    dut = Fetcher(cfg, max_burst=max_burst, outstanding=outstanding)
    axi = dut.axi
    rng = random.Random(seed)
    rows, bursts, counters = [], [], {}
    pending = []                         # (ready cycle, addr, beats), in AR order
    total_rows = sum(len(idx) for _, idx in requests)
    clock = [0]

    async def producer(ctx):
        ctx.set(dut.msb_base, OFFSET + layout.msb_base)
        ctx.set(dut.lsb_base, OFFSET + layout.lsb_base)
        for plane, indices in requests:
            for n, index in enumerate(indices):
                while rng.random() < gap:
                    ctx.set(dut.i.valid, 0)
                    await ctx.tick()
                ctx.set(dut.i.payload, {"index": int(index), "plane": plane,
                                        "last": n == len(indices) - 1})
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def ar_channel(ctx):
        while True:
            ctx.set(axi.arready, int(rng.random() < ar_ready))
            _, _, valid, ready, addr, length, size, burst = await ctx.tick().sample(
                axi.arvalid, axi.arready, axi.araddr, axi.arlen, axi.arsize, axi.arburst)
            clock[0] += 1
            if valid and ready:
                bursts.append((addr, length + 1, size, burst))
                pending.append((clock[0] + rng.randint(*latency), addr, length + 1))

    async def r_channel(ctx):
        beat_bytes = cfg.beat_bytes
        while True:
            if not pending or pending[0][0] > clock[0]:
                ctx.set(axi.rvalid, 0)
                await ctx.tick()
                continue
            _, addr, beats = pending.pop(0)
            for b in range(beats):
                while rng.random() < stall:
                    ctx.set(axi.rvalid, 0)
                    await ctx.tick()
                at = addr + b * beat_bytes
                ctx.set(axi.rdata, int.from_bytes(image[at:at + beat_bytes], "little"))
                ctx.set(axi.rlast, b == beats - 1)
                ctx.set(axi.rvalid, 1)
                await ctx.tick().until(axi.rready)
                if r_edges is not None:
                    r_edges.append(clock[0])
            ctx.set(axi.rvalid, 0)

    async def consumer(ctx):
        cycles = 0
        while len(rows) < total_rows:
            ready = int(rng.random() < o_ready)
            ctx.set(dut.o.ready, ready)
            _, _, valid, out = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            cycles += 1
            assert cycles < 50 * total_rows * 4 + 2000, "the fetcher stopped"
            if valid and ready:
                rows.append((out.row, out.index, out.plane, out.last))
        await ctx.tick().repeat(4)
        counters["msb"] = ctx.get(dut.msb_bytes)
        counters["lsb"] = ctx.get(dut.lsb_bytes)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(ar_channel, background=True)
    sim.add_testbench(r_channel, background=True)
    sim.add_testbench(consumer)
    sim.run()
    return rows, bursts, counters, layout


def check(cfg, keys, requests, **kwargs):
    rows, bursts, counters, layout = run(cfg, keys, requests, **kwargs)
    msb, lsb = qk.split_planes(keys, cfg)
    at = 0
    for plane, indices in requests:
        bits = cfg.msb_bits if plane == MSB else cfg.lsb_bits
        values = msb if plane == MSB else lsb
        for n, index in enumerate(indices):
            row, got_index, got_plane, last = rows[at]
            at += 1
            assert (got_index, got_plane, last) == (index, plane, n == len(indices) - 1)
            elements = qk.unpack_plane(row.to_bytes(cfg.head_dim * cfg.msb_bits // 8, "little"),
                                       cfg.head_dim, bits, signed=plane == MSB)
            np.testing.assert_array_equal(elements, values[index],
                                          err_msg=f"key {index} plane {plane}")
    max_burst = kwargs.get("max_burst", 16)
    for addr, beats, size, burst in bursts:
        assert size == (cfg.beat_bytes.bit_length() - 1) and burst == 1
        assert 1 <= beats <= max_burst
        assert addr // 4096 == (addr + beats * cfg.beat_bytes - 1) // 4096, "burst crosses 4 KB"
    n_msb = sum(len(i) for p, i in requests if p == MSB)
    n_lsb = sum(len(i) for p, i in requests if p == LSB)
    assert counters == {"msb": n_msb * cfg.msb_row_bytes, "lsb": n_lsb * cfg.lsb_row_bytes}
    assert sum(b for _, b, _, _ in bursts) * cfg.beat_bytes == counters["msb"] + counters["lsb"]
    return bursts


@pytest.mark.parametrize("msb_bits", [6, 8])
def test_fetch_alive_keys_of_both_planes(msb_bits):
    cfg = QKConfig(msb_bits=msb_bits, n_max=512, sum_frac_bits=21)
    rng = np.random.default_rng(msb_bits)
    lim = 1 << (cfg.key_bits - 1)
    keys = rng.integers(-lim, lim, (400, cfg.head_dim))
    alive = np.flatnonzero(rng.random(400) < 0.7)
    holes = np.flatnonzero(np.arange(400) % 7 != 3)
    requests = [(MSB, alive), (LSB, alive[:50]), (MSB, np.arange(400)), (LSB, holes), (MSB, [399]),
                (LSB, [0])]
    bursts = check(cfg, keys, requests, seed=msb_bits)
    # contiguous keys share bursts: far fewer bursts than rows
    assert len(bursts) < 0.6 * sum(len(i) for _, i in requests)
    # and some run was split at a 4 KB boundary (OFFSET puts one inside a row)
    ends = [a + n * cfg.beat_bytes for a, n, _, _ in bursts]
    assert any(end % 4096 == 0 and nxt[0] == end for end, nxt in zip(ends, bursts[1:]))


def test_fetch_without_stalls_and_long_bursts():
    cfg = QKConfig(n_max=256, sum_frac_bits=20, axi_data_width=32)
    rng = np.random.default_rng(3)
    keys = rng.integers(-512, 512, (256, cfg.head_dim))
    check(cfg, keys, [(MSB, np.arange(256)), (LSB, np.arange(0, 256, 2))], seed=1, stall=0,
          latency=(1, 1), max_burst=256, outstanding=8)


def test_fetch_parameters_are_checked():
    with pytest.raises(ValueError, match="max_burst=2 is shorter than a key's row"):
        Fetcher(QKConfig(), max_burst=2)
    with pytest.raises(ValueError, match="max_burst must be in"):
        Fetcher(QKConfig(), max_burst=300)


def test_fetch_streams_a_beat_per_cycle():
    """Memory that never stalls (fixed latency, AR always ready), output always ready: the R
    channel moves a beat every cycle over a long request, bursts overlapping their latency."""
    cfg = QKConfig(n_max=512, sum_frac_bits=21)
    rng = np.random.default_rng(5)
    keys = rng.integers(-512, 512, (400, cfg.head_dim))
    r_edges = []
    check(cfg, keys, [(MSB, np.arange(400))], seed=3, stall=0, latency=(6, 6), ar_ready=1,
          o_ready=1, gap=0, max_burst=16, outstanding=4, r_edges=r_edges)
    beats = 400 * cfg.msb_row_bytes // cfg.beat_bytes
    assert len(r_edges) == beats
    span = r_edges[-1] - r_edges[0] + 1
    print(f"{beats} R beats in {span} cycles")
    assert span <= beats * 1.02
