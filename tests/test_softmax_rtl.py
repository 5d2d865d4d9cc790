"""The streaming softmax (rtl/softmax.py) in Amaranth's simulator, bit for bit against
sim/softmax.py: random rows, real MiniLM rows, adversarial rows, random input gaps and output
backpressure, and the cycle count of sim/softmax.softmax_cycles."""

import math
import random

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from attnforge.configs.qk import QKConfig
from attnforge.rtl.softmax import Softmax
from attnforge.sim import minilm as M
from attnforge.sim import softmax as sm

#: small configurations: L = 2, 1, 3 and 4 lanes
SMALL = QKConfig(head_dim=16, multipliers=32, n_max=64, sum_frac_bits=18, axi_data_width=32)
ONE = QKConfig(head_dim=16, multipliers=16, n_max=32, sum_frac_bits=17, axi_data_width=32)
THREE = QKConfig(head_dim=16, multipliers=48, n_max=64, sum_frac_bits=18, axi_data_width=32,
                 score_frac_bits=6, prob_frac_bits=12)
FOUR = QKConfig(head_dim=8, msb_bits=8, multipliers=32, n_max=128, sum_frac_bits=20, axi_data_width=32,
                score_frac_bits=10, prob_frac_bits=16)


class Row:
    """One row to drive: scores, alive mask, scale constant, threshold code."""

    def __init__(self, scores, alive=None, const=None, threshold=0, cfg=SMALL):
        self.scores = np.asarray(scores, dtype=np.int64)
        self.alive = np.ones(len(self.scores), bool) if alive is None else np.asarray(alive, bool)
        self.const = const if const is not None else sm.scale_constant(1 / 64, cfg)
        self.threshold = threshold

    def expected(self, cfg):
        st = sm.softmax_stages(self.scores, self.const, cfg, self.alive)
        return st.probs, int(st.max_prob), bool(st.max_prob < self.threshold)


def run(cfg, rows, *, seed=0, gap=0.3, stall=0.3, limit=None):
    """Drive ``rows`` through the softmax; return per row ``(probs, alive, max_prob, refetch)``
    as collected, the cycle of each row's first input handshake and last output handshake."""
    dut = Softmax(cfg)
    L = dut.lanes
    rng = random.Random(seed)
    got = []
    times = {"first_in": [], "last_out": []}

    async def producer(ctx):
        edge = 0                          # clock edges so far: a handshake happens at one
        for row in rows:
            n = len(row.scores)
            beats = -(-n // L)
            for beat in range(beats):
                while rng.random() < gap:
                    ctx.set(dut.i.valid, 0)
                    await ctx.tick()
                    edge += 1
                lanes = range(beat * L, beat * L + L)
                ctx.set(dut.i.payload.scores, [int(row.scores[k]) if k < n else 0 for k in lanes])
                ctx.set(dut.i.payload.alive, sum(1 << j for j, k in enumerate(lanes)
                                                 if k < n and row.alive[k]))
                ctx.set(dut.i.payload.last, beat == beats - 1)
                if beat == 0:
                    ctx.set(dut.scale_mant, row.const.mant)
                    ctx.set(dut.scale_shift, row.const.shift)
                    ctx.set(dut.threshold, row.threshold)
                ctx.set(dut.i.valid, 1)
                while True:
                    _, _, ready = await ctx.tick().sample(dut.i.ready)
                    edge += 1
                    if ready:
                        break
                if beat == 0:
                    times["first_in"].append(edge)
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        edge = 0
        budget = limit or sum(3 * len(r.scores) + 200 for r in rows) * 4
        for row in rows:
            probs, alive, mps, refs = [], [], set(), set()
            while True:
                ready = int(rng.random() >= stall)
                ctx.set(dut.o.ready, ready)
                _, _, valid, out = await ctx.tick().sample(dut.o.valid, dut.o.payload)
                edge += 1
                assert edge < budget, "the softmax stopped producing"
                if not (valid and ready):
                    continue
                probs += list(out.probs)
                alive += [(out.alive >> j) & 1 for j in range(L)]
                mps.add(out.max_prob)
                refs.add(out.refetch)
                if out.last:
                    times["last_out"].append(edge)
                    break
            assert len(mps) == 1 and len(refs) == 1, "max_prob/refetch change within a row"
            n = len(row.scores)
            assert len(probs) == -(-n // L) * L
            assert all(p == 0 for p in probs[n:]) and not any(alive[n:])
            got.append((np.array(probs[:n]), np.array(alive[:n], bool), mps.pop(), bool(refs.pop())))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return got, times, dut


def check(cfg, rows, **kwargs):
    got, times, dut = run(cfg, rows, **kwargs)
    assert len(got) == len(rows)
    for n, (row, (probs, alive, mp, ref)) in enumerate(zip(rows, got)):
        want_probs, want_mp, want_ref = row.expected(cfg)
        np.testing.assert_array_equal(alive, row.alive, err_msg=f"row {n}: alive flags")
        np.testing.assert_array_equal(probs, want_probs, err_msg=f"row {n}: probabilities")
        assert (mp, ref) == (want_mp, want_ref), f"row {n}: max_prob/refetch"
    return got, times, dut


def random_rows(cfg, rng, count, *, spread=None):
    """Rows of random length with random alive masks, scales and thresholds."""
    rows = []
    lim = 1 << (cfg.score_bits - 1)
    for _ in range(count):
        n = rng.randint(1, cfg.n_max)
        width = spread or rng.choice([1 << 8, 1 << 14, lim])
        scores = np.array([rng.randint(max(-lim, -width), min(lim - 1, width)) for _ in range(n)])
        alive = np.array([rng.random() < 0.8 for _ in range(n)])
        alive[rng.randrange(n)] = True
        scale = math.exp(rng.uniform(math.log(1e-7), math.log(1.0)))
        rows.append(Row(scores, alive, sm.scale_constant(scale, cfg),
                        rng.randint(0, 1 << cfg.prob_frac_bits), cfg))
    return rows


@pytest.mark.parametrize("cfg", [SMALL, ONE, THREE, FOUR], ids=["L2", "L1", "L3", "L4"])
def test_random_rows_with_gaps_and_backpressure(cfg):
    rng = random.Random(cfg.scores_per_cycle)
    rows = random_rows(cfg, rng, 12)
    got, _, _ = check(cfg, rows, seed=rng.randint(0, 1 << 30))
    # the thresholds were random: both decisions were seen
    assert {ref for *_, ref in got} == {True, False}


def test_adversarial_rows():
    """All equal (flat: refetch), one dominant (no refetch), extremes, N = 1, N = n_max, holes,
    scale constants at their extremes (shift 0 and 63), thresholds 0 and 1.0."""
    cfg = SMALL
    lo, hi = -(1 << (cfg.score_bits - 1)), (1 << (cfg.score_bits - 1)) - 1
    half = sm.threshold_code(0.5, cfg)
    big = sm.ScaleConstant((1 << 16) - 1, 0)        # the largest scale: everything saturates
    tiny = sm.ScaleConstant(1 << 15, 63)            # the smallest: every y rounds to 0
    n = cfg.n_max
    holes = np.arange(n) % 3 != 1
    rows = [
        Row(np.full(n, 1234), threshold=sm.threshold_code(0.05, cfg)),           # flat, refetch
        Row(np.where(np.arange(40) == 17, 5000, -5000), threshold=half),         # one dominant
        Row([hi], threshold=1 << cfg.prob_frac_bits),                             # N = 1
        Row([lo], threshold=(1 << cfg.prob_frac_bits) + 1 - 1),
        Row(np.resize([lo, hi], n), const=big, threshold=half),                   # extremes
        Row(np.resize([lo, hi, 0, -1], n), const=tiny, threshold=half),
        Row(np.resize([lo, hi, 0, -1], 33), const=sm.ScaleConstant(40000, 20)),
        Row(np.arange(n) * 1000 - 30000, holes, threshold=half),                  # holes
        Row(np.full(7, lo), [0, 0, 0, 1, 0, 0, 0], threshold=0),                  # one alive
        Row(np.resize([hi, hi - 1], 64), const=big),
        Row(np.arange(5), [1, 1, 0, 1, 1], const=sm.ScaleConstant(1 << 15, 0)),
    ]
    got, _, _ = check(cfg, rows, seed=5)
    assert got[0][3] and not got[1][3]
    assert got[2][2] == 1 << cfg.prob_frac_bits


def test_minilm_rows():
    """Real attention rows: MiniLM-L6 scores quantized to the score format, its real scale."""
    cfg = QKConfig(head_dim=32, multipliers=128, n_max=256, sum_frac_bits=20, axi_data_width=64)
    trace = M.forward(M.tokenize(M.PASSAGES[1]))
    rows = []
    for layer, head in ((0, 3), (2, 7), (5, 11)):
        q, sq = M.quantize_symmetric(trace.q[layer][head], 12)
        k, sk = M.quantize_symmetric(trace.k[layer][head], 10)
        scores = q @ k.T
        scale = sq * sk / math.sqrt(M.HEAD_DIM)
        for query in (0, 5, trace.length // 2):
            rows.append(Row(scores[query, :cfg.n_max], const=sm.scale_constant(scale, cfg),
                            threshold=sm.threshold_code(0.1, cfg), cfg=cfg))
    got, _, _ = check(cfg, rows, seed=11, gap=0.2, stall=0.2)
    assert len({ref for *_, ref in got}) == 2


def test_default_config_full_row():
    """The default configuration (n_max = 1024, L = 2) on a full row and a short one."""
    cfg = QKConfig()
    rng = np.random.default_rng(4)
    rows = [Row(rng.integers(-(1 << 20), 1 << 20, cfg.n_max), const=sm.scale_constant(1e-4, cfg),
                threshold=sm.threshold_code(0.05, cfg), cfg=cfg),
            Row(rng.integers(-(1 << 28), 1 << 28, 3), const=sm.scale_constant(3e-8, cfg), cfg=cfg)]
    check(cfg, rows, seed=2, gap=0.05, stall=0.05)


@pytest.mark.parametrize("cfg", [SMALL, ONE, THREE, FOUR], ids=["L2", "L1", "L3", "L4"])
def test_cycles_match_the_model(cfg):
    """A lone row at full rate: last output exactly softmax_cycles(N) after the first input;
    back to back, rows at softmax_interval(N): one pass per row, or the term slots' bound."""
    rng = random.Random(9)
    for n in (1, cfg.scores_per_cycle + 1, cfg.n_max):
        rows = [Row([rng.randint(-999, 999) for _ in range(n)], cfg=cfg)]
        _, times, dut = check(cfg, rows, gap=0, stall=0)
        assert times["last_out"][0] - times["first_in"][0] + 1 == sm.softmax_cycles(n, cfg)
    L = cfg.scores_per_cycle
    for beats in (cfg.n_max // L, 14, 4):
        rows = [Row([rng.randint(-999, 999) for _ in range(beats * L)], cfg=cfg) for _ in range(13)]
        _, times, _ = check(cfg, rows, gap=0, stall=0)
        ends = times["last_out"]
        interval = sm.softmax_interval(beats * L, cfg)
        if interval == beats + 1:             # every row at the rate of one pass
            assert np.diff(ends[1:]).tolist() == [beats + 1] * 11
        else:                                 # bursts of four rows, bounded by the term slots
            assert [ends[k + 4] - ends[k] for k in range(4, 9)] == [4 * interval] * 5

def test_latency_attribute_matches_the_model():
    for cfg in (SMALL, ONE, THREE, FOUR, QKConfig()):
        dut = Softmax(cfg)
        Fragment.get(dut, None)           # it elaborates
        assert sm.softmax_cycles(1, cfg) == 3 + dut.latency
    with pytest.raises(ValueError, match="n_keys=65 is out of range"):
        sm.softmax_cycles(65, SMALL)


def test_a_row_without_alive_scores_does_not_stall_the_next():
    """No alive score: that row's outputs are unspecified, but the rows after it are exact."""
    cfg = SMALL
    rows = [Row([5, 6, 7], [0, 0, 0]), Row([100, -100, 3, 4], threshold=9999), Row([1] * 7, [0] * 7),
            Row([7, 7, 8])]
    got, _, _ = run(cfg, rows, seed=4)
    assert len(got) == 4
    for n in (1, 3):
        probs, mp, ref = rows[n].expected(cfg)
        np.testing.assert_array_equal(got[n][0], probs)
        assert (got[n][2], got[n][3]) == (mp, ref)
    assert not got[0][1].any() and not got[2][1].any()        # the alive flags still pass
