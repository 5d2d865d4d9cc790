"""The bitwidth converter, the Q×K lanes and the chained datapath (rtl/qk.py) in Amaranth's
simulator, bit for bit against sim/qk.py and sim/softmax.py, with random input gaps and
output backpressure: random and extreme keys, real MiniLM heads at 6+4 and 8+4, the
progressive-quantization decision in both passes."""

import math
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from attnforge.configs.qk import QKConfig
from attnforge.rtl.qk import BitwidthConverter, QKDatapath, QKLanes
from attnforge.sim import minilm as M
from attnforge.sim import qk
from attnforge.sim import softmax as sm

SMALL = QKConfig(head_dim=8, msb_bits=8, multipliers=16, n_max=32, sum_frac_bits=17,
                 axi_data_width=32)


def _key_extremes(cfg, n):
    lim = 1 << (cfg.key_bits - 1)
    values = [-lim, -lim + 1, -lim + 15, -lim + 16, -17, -16, -15, -1, 0, 1, 15, 16, 17,
              lim - 17, lim - 16, lim - 1]
    return np.resize(np.array(values), (n, cfg.head_dim))


def _random_keys(rng, cfg, n):
    lim = 1 << (cfg.key_bits - 1)
    return rng.integers(-lim, lim, (n, cfg.head_dim))


def _sim(dut, *testbenches):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in testbenches:
        sim.add_testbench(bench)
    sim.run()


async def _put(ctx, port, payload, rng, gap):
    """One beat onto ``port`` after random idle cycles; returns the cycles it took."""
    cycles = 0
    while rng.random() < gap:
        ctx.set(port.valid, 0)
        await ctx.tick()
        cycles += 1
    ctx.set(port.payload, payload)
    ctx.set(port.valid, 1)
    while True:
        _, _, ready = await ctx.tick().sample(port.ready)
        cycles += 1
        if ready:
            ctx.set(port.valid, 0)
            return cycles


def _plane_beats(cfg, keys, alive, full):
    """The keys of one row as :func:`plane_beat` payloads (dead padding in the last beat)."""
    L, D = cfg.scores_per_cycle, cfg.head_dim
    msb, lsb = qk.split_planes(keys, cfg)
    n = len(keys)
    beats = []
    for b in range(-(-n // L)):
        idx = range(b * L, b * L + L)
        beats.append({
            "msb": [[int(msb[k, j]) if k < n else 0 for j in range(D)] for k in idx],
            "lsb": [[int(lsb[k, j]) if k < n else 0 for j in range(D)] for k in idx],
            "full": int(full),
            "alive": sum(1 << lane for lane, k in enumerate(idx) if k < n and alive[k]),
            "last": int(b == -(-n // L) - 1),
        })
    return beats


# ---- the bitwidth converter ----------------------------------------------------------------

@pytest.mark.parametrize("msb_bits", [4, 6, 8])
def test_converter_matches_split_and_recombine(msb_bits):
    cfg = QKConfig(head_dim=16, msb_bits=msb_bits, multipliers=32, n_max=128, sum_frac_bits=19,
                   axi_data_width=32)
    rng = np.random.default_rng(msb_bits)
    keys = np.concatenate([_key_extremes(cfg, 32), _random_keys(rng, cfg, 64)])
    prng = random.Random(msb_bits)
    full = [prng.random() < 0.5 for _ in range(len(keys) // cfg.scores_per_cycle)]
    beats = []
    for b, f in enumerate(full):
        chunk = keys[b * cfg.scores_per_cycle:(b + 1) * cfg.scores_per_cycle]
        beats += _plane_beats(cfg, chunk, np.ones(len(chunk), bool), f)
    dut = BitwidthConverter(cfg)
    got = []

    async def bench(ctx):           # combinational: outputs follow the inputs at once
        for beat in beats:
            ready = int(prng.random() < 0.7)
            ctx.set(dut.i.payload, beat)
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.o.ready, ready)
            assert ctx.get(dut.o.valid) == 1 and ctx.get(dut.i.ready) == ready
            out = ctx.get(dut.o.payload)
            got.append(([list(k) for k in out.keys], out.alive, out.last))
        ctx.set(dut.i.valid, 0)
        assert ctx.get(dut.o.valid) == 0

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    want_full = qk.recombine(*qk.split_planes(keys, cfg), cfg)
    want_msb = qk.msb_only(keys, cfg)
    np.testing.assert_array_equal(want_full, keys)
    for b, ((got_keys, alive, last), f) in enumerate(zip(got, full)):
        rows = slice(b * cfg.scores_per_cycle, (b + 1) * cfg.scores_per_cycle)
        want = want_full[rows] if f else want_msb[rows]
        np.testing.assert_array_equal(np.array(got_keys), want, err_msg=f"beat {b} full={f}")
        assert alive == (1 << cfg.scores_per_cycle) - 1 and last == 1


# ---- the Q×K lanes ---------------------------------------------------------------------------

def _run_lanes(cfg, rows, *, seed, gap=0.3, stall=0.3, q_gap=0.5):
    """Rows of ``(q, keys, alive)`` through the lanes; returns per row (scores, alive) and the
    cycle of the first input handshake and of the first output."""
    dut = QKLanes(cfg)
    L = cfg.scores_per_cycle
    rng = random.Random(seed)
    got = []
    times = {}

    async def queries(ctx):
        for q, _, _ in rows:
            await _put(ctx, dut.q, [int(x) for x in q], rng, q_gap)

    async def keys_in(ctx):
        edge = 0
        for q, keys, alive in rows:
            n = len(keys)
            for b in range(-(-n // L)):
                idx = range(b * L, b * L + L)
                beat = {"keys": [[int(keys[k, j]) if k < n else 0 for j in range(cfg.head_dim)]
                                 for k in idx],
                        "alive": sum(1 << lane for lane, k in enumerate(idx) if k < n and alive[k]),
                        "last": int(b == -(-n // L) - 1)}
                edge += await _put(ctx, dut.i, beat, rng, gap)
                times.setdefault("first_in", edge)

    async def consumer(ctx):
        edge = 0
        for _, keys, _ in rows:
            scores, alive = [], []
            while True:
                ready = int(rng.random() >= stall)
                ctx.set(dut.o.ready, ready)
                _, _, valid, out = await ctx.tick().sample(dut.o.valid, dut.o.payload)
                edge += 1
                if valid:
                    times.setdefault("first_valid", edge)
                assert edge < 100 * sum(len(k) for _, k, _ in rows) + 1000, "the lanes stopped"
                if valid and ready:
                    scores += list(out.scores)
                    alive += [(out.alive >> lane) & 1 for lane in range(L)]
                    if out.last:
                        break
            got.append((np.array(scores[:len(keys)]), np.array(alive[:len(keys)], bool)))
            assert not any(alive[len(keys):])

    _sim(dut, queries, keys_in, consumer)
    return got, times, dut


@pytest.mark.parametrize("cfg", [SMALL, QKConfig(head_dim=16, multipliers=48, n_max=64,
                                                 sum_frac_bits=18, axi_data_width=32)],
                         ids=["D8-L2", "D16-L3"])
def test_lanes_match_dot_products(cfg):
    rng = np.random.default_rng(cfg.head_dim)
    rows = []
    for n in (1, 2, 3, 7, cfg.n_max, 5):
        q = rng.integers(-2048, 2048, cfg.head_dim)
        keys = rng.integers(-2048, 2048, (n, cfg.head_dim))
        rows.append((q, keys, rng.random(n) < 0.8))
    # extremes: the largest products of either sign, in every lane
    rows.append((np.full(cfg.head_dim, -2048),
                 np.repeat([[-2048], [2047], [0]] * 3, cfg.head_dim, axis=1), np.ones(9, bool)))
    rows.append((np.full(cfg.head_dim, 2047), np.full((4, cfg.head_dim), -2048), np.ones(4, bool)))
    got, _, _ = _run_lanes(cfg, rows, seed=cfg.multipliers)
    for n, ((q, keys, alive), (scores, got_alive)) in enumerate(zip(rows, got)):
        np.testing.assert_array_equal(scores, qk.dot_scores(q[None], keys)[0], err_msg=f"row {n}")
        np.testing.assert_array_equal(got_alive, alive, err_msg=f"row {n}: alive")
    assert got[-2][0].min() == -cfg.head_dim * 2048 * 2047
    assert got[-2][0].max() == cfg.head_dim * 2048 * 2048


def test_lanes_full_rate_and_latency():
    cfg = SMALL
    rng = np.random.default_rng(1)
    rows = [(rng.integers(-2048, 2048, cfg.head_dim), rng.integers(-2048, 2048, (cfg.n_max, 8)),
             np.ones(cfg.n_max, bool)) for _ in range(3)]
    got, times, dut = _run_lanes(cfg, rows, seed=0, gap=0, stall=0, q_gap=0)
    assert dut.latency == 3 + 5          # log2(D) + 5
    assert times["first_valid"] - times["first_in"] == dut.latency
    for (q, keys, _), (scores, _) in zip(rows, got):
        np.testing.assert_array_equal(scores, qk.dot_scores(q[None], keys)[0])


# ---- the datapath: converter → lanes → softmax, with the refetch decision ------------------

def _run_datapath(cfg, q_batch, keys, alive, const, threshold, *, seed, gap=0.2, stall=0.2):
    """Each row as the block's controller would: the MSB pass, then the full pass when the
    softmax says refetch. Returns per row (probs, refetched, max_prob of the MSB pass)."""
    dut = QKDatapath(cfg)
    rng = random.Random(seed)
    results = []
    decisions = []

    async def controller(ctx):
        ctx.set(dut.scale_mant, const.mant)
        ctx.set(dut.scale_shift, const.shift)
        ctx.set(dut.threshold, threshold)
        for row, q in enumerate(q_batch):
            for full in (False, True):
                await _put(ctx, dut.q, [int(x) for x in q], rng, gap)
                for beat in _plane_beats(cfg, keys, alive[row], full):
                    await _put(ctx, dut.i, beat, rng, gap)
                while len(decisions) <= 2 * row + full:
                    await ctx.tick()
                if not full and not decisions[2 * row]:
                    break

    async def consumer(ctx):
        edge = 0
        for row in range(len(q_batch)):
            passes = []
            for full in (False, True):
                probs = []
                while True:
                    ready = int(rng.random() >= stall)
                    ctx.set(dut.o.ready, ready)
                    _, _, valid, out = await ctx.tick().sample(dut.o.valid, dut.o.payload)
                    edge += 1
                    assert edge < 200_000, "the datapath stopped"
                    if valid and ready:
                        probs += list(out.probs)
                        if out.last:
                            break
                passes.append((np.array(probs[:len(keys)]), out.max_prob, out.refetch))
                decisions.append(out.refetch)
                if not full and not out.refetch:
                    decisions.append(None)
                    break
            results.append((passes[-1][0], len(passes) == 2, passes[0][1]))

    _sim(dut, controller, consumer)
    return results


def _check_datapath(cfg, q, keys, alive, scale, threshold, mode, seed):
    const = sm.scale_constant(scale, cfg)
    code = sm.threshold_code(threshold, cfg)
    want = qk.attention_probs(q, keys, const, cfg, code, mode, alive)
    got = _run_datapath(cfg, q, keys, alive, const, code, seed=seed)
    for row, (probs, refetched, max_prob) in enumerate(got):
        assert (refetched, max_prob) == (bool(want.refetched[row]), int(want.max_prob[row])), \
            f"row {row}: decision"
        np.testing.assert_array_equal(probs, want.probs[row], err_msg=f"row {row}: probabilities")
    return want


@pytest.fixture(scope="module")
def trace():
    return M.forward(M.tokenize(M.PASSAGES[0]))


@pytest.mark.parametrize("msb_bits, threshold, layer, head", [
    (6, 0.1, 2, 5), (8, 0.05, 0, 9), (6, 0.05, 4, 1), (8, 0.1, 3, 2)])
def test_datapath_minilm_heads(trace, msb_bits, threshold, layer, head):
    """Q and K of a real head, quantized to 12 and msb_bits + 4 bits; a few queries, both passes."""
    cfg = QKConfig(head_dim=32, msb_bits=msb_bits, multipliers=64, n_max=512, sum_frac_bits=21)
    q, sq = M.quantize_symmetric(trace.q[layer][head], 12)
    k, sk = M.quantize_symmetric(trace.k[layer][head], cfg.key_bits)
    rows = [0, 17, trace.length - 1]
    alive = np.ones((len(rows), len(k)), bool)
    alive[1, 5::4] = False                         # a pruned row: holes in the keys
    want = _check_datapath(cfg, q[rows], k, alive, sq * sk / math.sqrt(M.HEAD_DIM), threshold,
                           "generation", seed=msb_bits + layer)
    print(f"{msb_bits}+4 t={threshold} L{layer}H{head}: refetched {want.refetched.tolist()}")


def test_datapath_adversarial():
    """All keys equal (flat: refetch), one dominant key (no refetch), extreme keys, N = 1,
    N = n_max, an alive mask with holes."""
    cfg = QKConfig(head_dim=16, msb_bits=6, multipliers=32, n_max=32, sum_frac_bits=17,
                   axi_data_width=32)
    D, lim = cfg.head_dim, 1 << (cfg.key_bits - 1)
    threshold = 0.1
    cases = []
    q = np.full((1, D), 300)
    cases.append((q, np.full((cfg.n_max, D), 77), np.ones((1, cfg.n_max), bool), 1e-4, [True]))
    dom = np.full((20, D), -100)
    dom[13] = lim - 1
    cases.append((q, dom, np.ones((1, 20), bool), 1e-3, [False]))
    cases.append((np.array([[-2048] * D, [2047] * D]), _key_extremes(cfg, cfg.n_max),
                  np.ones((2, cfg.n_max), bool), 1e-5, None))
    cases.append((np.resize([5, -7, 0, 2047, -2048, 1, 1, 1], (1, D)), np.full((1, D), lim - 1),
                  np.ones((1, 1), bool), 0.01, [False]))
    holes = np.arange(cfg.n_max) % 5 != 2
    cases.append((np.resize([1000, -3, 4, 9, -2000, 0, 7, 7], (1, D)), _key_extremes(cfg, cfg.n_max),
                  holes[None], 2e-5, None))
    for n, (qs, keys, alive, scale, expect) in enumerate(cases):
        want = _check_datapath(cfg, qs, keys, alive, scale, threshold, "generation", seed=n)
        if expect is not None:
            assert want.refetched.tolist() == expect


def test_datapath_sustains_one_beat_per_cycle():
    """Rows back to back, queries ahead, output always ready: a row every ceil(N/L) + 1
    cycles, so the multipliers do N·D MACs in (N/L + 1) cycles: ≥ 0.9 of their peak for
    N ≥ 10·L. Probabilities still exact."""
    cfg = QKConfig(head_dim=8, msb_bits=8, multipliers=16, n_max=64, sum_frac_bits=18,
                   axi_data_width=32)
    L, n, count = cfg.scores_per_cycle, 64, 5
    rng = np.random.default_rng(8)
    lim = 1 << (cfg.key_bits - 1)
    keys = rng.integers(-lim, lim, (n, cfg.head_dim))
    qs = rng.integers(-2048, 2048, (count, cfg.head_dim))
    const = sm.scale_constant(3e-5, cfg)
    dut = QKDatapath(cfg)
    ends, probs = [], []

    async def queries(ctx):
        for q in qs:
            ctx.set(dut.q.payload, [int(x) for x in q])
            ctx.set(dut.q.valid, 1)
            await ctx.tick().until(dut.q.ready)
        ctx.set(dut.q.valid, 0)

    async def planes(ctx):
        ctx.set(dut.scale_mant, const.mant)
        ctx.set(dut.scale_shift, const.shift)
        for _ in qs:
            for beat in _plane_beats(cfg, keys, np.ones(n, bool), True):
                ctx.set(dut.i.payload, beat)
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)
        edge, row = 0, []
        while len(ends) < count:
            _, _, valid, out = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            edge += 1
            assert edge < 10_000
            if valid:
                row += list(out.probs)
                if out.last:
                    ends.append(edge)
                    probs.append(row[:n])
                    row = []

    _sim(dut, queries, planes, consumer)
    want = sm.softmax_stages(qk.dot_scores(qs, keys), const, cfg).probs
    np.testing.assert_array_equal(np.array(probs), want)
    beats = -(-n // L)
    assert np.diff(ends).tolist() == [beats + 1] * (count - 1)
