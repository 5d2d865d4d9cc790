"""sim/qk.py and sim/softmax.py: key planes, memory layout, the fixed-point softmax against a
float64 softmax of the same integer scores, the progressive-quantization decision and the
DRAM byte accounting, on random, adversarial and real MiniLM data.

Tolerance: every probability within 1/256 (absolute) of ``softmax(scores · scale)`` in
float64 — the issue's contract. The analysis in sim/softmax.py puts the true worst case near
2**-10 (the exp's 2**-score_frac_bits rounding); the tests print the worst error they see.
Run with ``-s`` to see the reports.
"""

import math

import numpy as np
import pytest

from attnforge.config import ConfigError
from attnforge.configs.qk import QKConfig
from attnforge.sim import minilm as M
from attnforge.sim import qk
from attnforge.sim import softmax as sm

TOLERANCE = 1 / 256
CFG = QKConfig()
SOFTMAX_CONFIGS = [
    QKConfig(),
    QKConfig(msb_bits=8, prob_frac_bits=16),
    QKConfig(score_frac_bits=10, sum_frac_bits=24, n_max=4096),
    QKConfig(head_dim=64, multipliers=128, n_max=256, sum_frac_bits=20),
    QKConfig(head_dim=256, multipliers=256, n_max=16384, sum_frac_bits=28, score_frac_bits=12,
             prob_frac_bits=16),                       # the widest formats
]


def float_softmax(scores, scale, alive=None):
    """The reference: float64 softmax of ``scores · scale`` over the alive keys."""
    x = np.asarray(scores, dtype=np.float64) * scale
    if alive is not None:
        x = np.where(alive, x, -np.inf)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def prob_error(probs, scores, scale, cfg, alive=None):
    return float(np.abs(probs / 2.0 ** cfg.prob_frac_bits - float_softmax(scores, scale, alive)).max())


def random_keys(rng, n, cfg):
    lim = 1 << (cfg.key_bits - 1)
    return rng.integers(-lim, lim, (n, cfg.head_dim))


def random_queries(rng, b, cfg):
    return rng.integers(-2048, 2048, (b, cfg.head_dim))


@pytest.fixture(scope="module")
def trace():
    return M.forward(M.tokenize(M.PASSAGES[0]))


def minilm_head(trace, layer, head, key_bits):
    """Q (12 bits) and K (``key_bits``) of one head, quantized per head, and the score scale."""
    q, sq = M.quantize_symmetric(trace.q[layer][head], 12)
    k, sk = M.quantize_symmetric(trace.k[layer][head], key_bits)
    return q, k, sq * sk / math.sqrt(M.HEAD_DIM)


# ---- config --------------------------------------------------------------------------------

def test_config_defaults_and_widths():
    cfg = QKConfig()
    assert (cfg.head_dim, cfg.msb_bits, cfg.lsb_bits, cfg.multipliers) == (32, 6, 4, 64)
    assert (cfg.n_max, cfg.axi_data_width, cfg.key_bits, cfg.scores_per_cycle) == (1024, 64, 10, 2)
    assert cfg.score_bits == 29 and cfg.sum_bits == 33 and cfg.prob_bits == cfg.threshold_bits == 16
    assert (cfg.msb_row_bytes, cfg.lsb_row_bytes) == (24, 16)
    # a saturated y leaves no term: the integer part reaches sum_frac_bits + 2
    assert (cfg.y_max >> cfg.score_frac_bits) >= cfg.sum_frac_bits + 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(msb_bits=5), "msb_bits=5 is out of range: expected one of 4, 6, 8"),
    (dict(lsb_bits=3), "lsb_bits=3 is out of range"),
    (dict(multipliers=48), "multipliers=48 must be a multiple of head_dim=32"),
    (dict(axi_data_width=128), "192 bits, not a whole number of axi_data_width=128"),
    (dict(sum_frac_bits=20), "sum_frac_bits=20 is too few for n_max=1024"),
    (dict(prob_frac_bits=17), "prob_frac_bits=17 is out of range"),
    (dict(head_dim=24), "head_dim=24 is out of range"),
    (dict(sum_frac_bits=29), "sum_frac_bits=29 is out of range"),
])
def test_config_rejects(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        QKConfig(**kwargs)


@pytest.mark.parametrize("cfg", SOFTMAX_CONFIGS[:3], ids=lambda c: f"F{c.score_frac_bits}")
def test_exp_and_seed_tables(cfg):
    exp = np.array(cfg.exp_table())
    assert len(exp) == cfg.exp_table_size and exp[0] == 1 << cfg.EXP_BITS
    assert np.all(np.diff(exp) < 0) and exp.max() < 1 << (cfg.EXP_BITS + 1)
    exact = 2.0 ** (cfg.EXP_BITS - np.arange(cfg.exp_table_size) / cfg.exp_table_size)
    assert np.abs(exp - exact).max() <= 0.5
    seed = np.array(cfg.recip_seed_table())
    assert len(seed) == 1 << cfg.RECIP_SEED_BITS
    assert seed.min() > 1 << (cfg.RECIP_BITS - 1) and seed.max() < 1 << cfg.RECIP_BITS


# ---- planes and memory ---------------------------------------------------------------------

def key_extremes(cfg):
    lim = 1 << (cfg.key_bits - 1)
    values = [-lim, -lim + 1, -lim + 15, -lim + 16, -17, -16, -15, -1, 0, 1, 15, 16, 17,
              lim - 17, lim - 16, lim - 1]
    return np.resize(np.array(values), (len(values) * 2, cfg.head_dim))


@pytest.mark.parametrize("msb_bits", [4, 6, 8])
def test_split_recombine_exact(msb_bits):
    cfg = QKConfig(msb_bits=msb_bits)
    rng = np.random.default_rng(msb_bits)
    for keys in (random_keys(rng, 500, cfg), key_extremes(cfg)):
        msb, lsb = qk.split_planes(keys, cfg)
        # independent reference: floor division and modulo
        assert np.array_equal(msb, np.floor_divide(keys, 16))
        assert np.array_equal(lsb, np.mod(keys, 16))
        assert msb.min() >= -(1 << (msb_bits - 1)) and msb.max() < 1 << (msb_bits - 1)
        assert lsb.min() >= 0 and lsb.max() < 16
        assert np.array_equal(qk.recombine(msb, lsb, cfg), keys)
        only = qk.msb_only(keys, cfg)
        assert np.array_equal(only, keys - np.mod(keys, 16))
        assert np.array_equal(only, qk.recombine(msb, 0, cfg))


@pytest.mark.parametrize("msb_bits", [4, 6, 8])
def test_memory_image_layout(msb_bits):
    cfg = QKConfig(msb_bits=msb_bits)
    rng = np.random.default_rng(10 + msb_bits)
    for n in (1, 3, 37, cfg.n_max):
        keys = random_keys(rng, n, cfg)
        keys[0] = key_extremes(cfg)[0]
        layout = qk.plane_layout(n, cfg)
        msb_bytes, lsb_bytes = qk.plane_bytes(n, cfg)
        assert (layout.msb_base, layout.msb_bytes, layout.lsb_bytes) == (0, msb_bytes, lsb_bytes)
        assert msb_bytes == n * 32 * msb_bits // 8 and lsb_bytes == n * 32 * 4 // 8
        assert layout.lsb_base % cfg.PLANE_ALIGN == 0
        assert msb_bytes <= layout.lsb_base < msb_bytes + cfg.PLANE_ALIGN
        assert cfg.msb_row_bytes % cfg.beat_bytes == 0 and cfg.lsb_row_bytes % cfg.beat_bytes == 0
        image = qk.memory_image(keys, cfg)
        assert len(image) == layout.total_bytes
        assert np.array_equal(qk.read_keys(image, n, cfg), keys)
        # independent bit reading: element i of a b-bit plane at bit i·b of the plane
        msb, lsb = qk.split_planes(keys, cfg)
        plane_msb = int.from_bytes(image[:msb_bytes], "little")
        plane_lsb = int.from_bytes(image[layout.lsb_base:], "little")
        for i in map(int, rng.integers(0, n * 32, 50)):
            key, j = divmod(i, 32)
            mask = (1 << msb_bits) - 1
            assert (plane_msb >> (i * msb_bits)) & mask == msb[key, j] & mask
            assert (plane_lsb >> (i * 4)) & 15 == lsb[key, j]
        assert layout.row_address("msb", n - 1, cfg) == (n - 1) * cfg.msb_row_bytes
        assert layout.row_address("lsb", n - 1, cfg) == layout.lsb_base + (n - 1) * cfg.lsb_row_bytes


def test_memory_bytes_by_hand():
    cfg = QKConfig(msb_bits=4)
    keys = np.zeros((1, 32), dtype=np.int64)
    keys[0, :3] = [0x12, -0x23, 0x7F]      # planes: msb 1, -3 (0xD), 7; lsb 2, 0xD, 0xF
    image = qk.memory_image(keys, cfg)
    assert image[0] == 0xD1 and image[1] == 0x07
    assert qk.plane_layout(1, cfg).lsb_base == 64
    assert image[64] == 0xD2 and image[65] == 0x0F


def test_plane_layout_range():
    with pytest.raises(ValueError, match=r"n_keys=0 is out of range: allowed \[1, n_max=1024\]"):
        qk.plane_layout(0)
    with pytest.raises(ValueError, match="n_keys=1025"):
        qk.plane_layout(1025)


# ---- constants -----------------------------------------------------------------------------

def test_scale_constant():
    for scale in np.geomspace(1e-12, 100, 200):
        const = sm.scale_constant(scale, CFG)
        assert 1 << 15 <= const.mant < 1 << 16 and 0 <= const.shift < 64
        assert abs(const.value(CFG) / scale - 1) <= 2.0 ** -16
    for bad in (0.0, -1e-6, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="scale must be a positive finite number"):
            sm.scale_constant(bad, CFG)
    for bad in (1e-20, 1e3):
        with pytest.raises(ValueError, match="is out of range: allowed"):
            sm.scale_constant(bad, CFG)


def test_threshold_code():
    assert sm.threshold_code(0.1) == 3277 and sm.threshold_code(0.05) == 1638
    assert sm.threshold_code(0.0) == 0 and sm.threshold_code(1.0) == 1 << 15
    assert sm.threshold_code(0.1, QKConfig(prob_frac_bits=16)) == 6554
    with pytest.raises(ValueError, match=r"threshold=1.5 is out of range: allowed \[0, 1\]"):
        sm.threshold_code(1.5)


def test_reciprocal_every_mantissa():
    rb = CFG.RECIP_BITS
    m = np.arange(1 << (rb - 1), 1 << rb, dtype=np.int64)
    for total in (m, m << 9, (m << 16) + 12345):
        z, r = sm.reciprocal(total, CFG)
        rel = r * total / 2.0 ** (rb + z) - 1
        assert np.abs(rel).max() < 2.0 ** -15
        assert r.max() < (1 << rb) - 1          # the clamp never fires
    # the Newton error term fits an 18-bit signed multiplier operand
    k = CFG.RECIP_SEED_BITS
    r0 = np.array(CFG.recip_seed_table())[(m >> (rb - 1 - k)) & ((1 << k) - 1)]
    err = ((1 << (2 * rb - 1)) - m * r0) >> CFG.RECIP_ERR_SHIFT
    assert -(1 << 17) <= err.min() and err.max() < 1 << 17


# ---- softmax -------------------------------------------------------------------------------

def random_rows(rng, cfg, count):
    """(scores, scale) pairs: widths, spreads and lengths varied, extremes included."""
    top = (1 << (cfg.score_bits - 1)) - 1
    for _ in range(count):
        n = int(rng.choice([1, 2, 3, 7, 64, 267, cfg.n_max]))
        n = min(n, cfg.n_max)
        amp = int(rng.choice([1, 100, 1 << 16, 1 << 22, top]))
        scores = rng.integers(-amp, amp + 1, (8, n))
        spread = float(rng.choice([0.1, 1, 4, 12, 40, 1000]))   # real range of a row
        yield scores, min(spread / (2 * amp), 10.0)


def config_id(c):
    return f"D{c.head_dim}F{c.score_frac_bits}E{c.sum_frac_bits}P{c.prob_frac_bits}"


@pytest.mark.parametrize("cfg", SOFTMAX_CONFIGS, ids=config_id)
def test_softmax_random_within_tolerance(cfg):
    rng = np.random.default_rng(cfg.score_frac_bits + cfg.head_dim)
    worst = 0.0
    for scores, scale in random_rows(rng, cfg, 120):
        st = sm.softmax_stages(scores, scale, cfg)
        worst = max(worst, prob_error(st.probs, scores, scale, cfg))
        assert st.probs.min() >= 0 and st.probs.max() <= 1 << cfg.prob_frac_bits
        assert np.array_equal(st.max_prob, st.probs.max(axis=-1))
        assert np.all(st.terms.max(axis=-1) == 1 << cfg.sum_frac_bits)
        assert st.total.max() < 1 << cfg.sum_bits
        assert st.y.max() <= cfg.y_max
    print(f"\nsoftmax vs float64, random rows, {cfg}: worst |error| = {worst:.6f} "
          f"(tolerance {TOLERANCE:.6f})")
    assert worst < TOLERANCE


def test_softmax_shift_invariant_and_single_key():
    rng = np.random.default_rng(3)
    scores = rng.integers(-5000, 5000, (20, 50))
    a = sm.softmax_fixed(scores, 1e-3)
    assert np.array_equal(a, sm.softmax_fixed(scores + 123456, 1e-3))
    assert np.array_equal(sm.softmax_fixed([[7]], 1e-3), [[1 << 15]])
    top = (1 << 28) - 1
    assert np.array_equal(sm.softmax_fixed([[-top - 1]], 1.0), [[1 << 15]])


def test_softmax_adversarial():
    cfg = CFG
    top = (1 << (cfg.score_bits - 1)) - 1
    worst = 0.0
    cases = []
    # extremes: both ends of the score range, saturated y (terms of 0)
    cases.append((np.array([[top, -top - 1, top, 0]]), 1e-6))
    cases.append((np.array([[top, -top - 1, top - 1, 0]]), 1.0))
    # one maximum and n_max − 1 tiny terms whose rounding all goes the same way
    for y in np.arange(6.0, 26.0, 0.125):
        scores = np.full((1, cfg.n_max), -1000)
        scores[0, 0] = 0
        cases.append((scores, y / 1000 / math.log2(math.e)))
    # all equal, two equal maxima, a ramp
    cases.append((np.zeros((1, cfg.n_max), dtype=np.int64), 0.5))
    cases.append((np.array([[5, 5] + [0] * 30]), 0.3))
    cases.append((np.arange(cfg.n_max)[None, :] * 997, 1e-4))
    for scores, scale in cases:
        probs = sm.softmax_fixed(scores, scale, cfg)
        worst = max(worst, prob_error(probs, scores, scale, cfg))
    print(f"\nsoftmax vs float64, adversarial rows: worst |error| = {worst:.6f}")
    assert worst < TOLERANCE
    flat = sm.softmax_fixed(np.zeros((1, 64), dtype=np.int64), 0.5, cfg)
    assert np.all(flat == flat[0, 0]) and flat[0, 0] == (1 << 15) // 64


def test_softmax_minilm_rows(trace):
    worst, rows = 0.0, 0
    for layer in range(M.NUM_LAYERS):
        for head in range(M.NUM_HEADS):
            q, k, scale = minilm_head(trace, layer, head, 12)
            cfg = QKConfig(msb_bits=8)
            scores = qk.dot_scores(q, k)
            for s in (scores, qk.dot_scores(q, qk.msb_only(k, cfg))):
                worst = max(worst, prob_error(sm.softmax_fixed(s, scale, cfg), s, scale, cfg))
            rows += 2 * len(q)
    print(f"\nsoftmax vs float64, {rows} MiniLM rows (passage 0, L={trace.length}, all layers and "
          f"heads, full and MSB-only keys): worst |error| = {worst:.6f} (tolerance {TOLERANCE:.6f})")
    assert worst < TOLERANCE


def test_softmax_alive_and_errors():
    rng = np.random.default_rng(4)
    scores = rng.integers(-3000, 3000, (5, 40))
    alive = rng.random((5, 40)) < 0.5
    alive[:, 3] = True
    probs = sm.softmax_fixed(scores, 2e-3, CFG, alive)
    assert np.all(probs[~alive] == 0)
    for i in range(5):
        assert np.array_equal(probs[i, alive[i]], sm.softmax_fixed(scores[i, alive[i]], 2e-3, CFG))
    with pytest.raises(ValueError, match="at least one alive key"):
        sm.softmax_fixed(scores, 2e-3, CFG, np.zeros(40, dtype=bool))
    with pytest.raises(ValueError, match=r"does not fit score_bits=29: allowed \[-268435456, 268435455\]"):
        sm.softmax_fixed([[1 << 28]], 1.0)
    with pytest.raises(ValueError, match="scores must be integers"):
        sm.softmax_fixed([[0.5]], 1.0)


# ---- the row: decision and traffic ---------------------------------------------------------

def reference_rows(q, keys, scale, cfg, threshold, alive):
    """The rule from the issue, computed directly: MSB-only first, full keys if max < threshold."""
    first = sm.softmax_fixed(qk.dot_scores(q, qk.msb_only(keys, cfg)), scale, cfg, alive)
    again = first.max(axis=1) < threshold
    full = sm.softmax_fixed(qk.dot_scores(q, keys), scale, cfg, alive)
    return np.where(again[:, None], full, first), again


@pytest.mark.parametrize("msb_bits", [6, 8])
def test_decision_rule_random(msb_bits):
    cfg = QKConfig(msb_bits=msb_bits, n_max=256)
    rng = np.random.default_rng(msb_bits)
    keys = random_keys(rng, 200, cfg)
    q = random_queries(rng, 40, cfg) >> (np.arange(40) % 7)[:, None]   # flat to peaked rows
    scale = 4.0 / (math.sqrt(cfg.head_dim) * 2048 * (1 << (cfg.key_bits - 1)) / 3)
    for threshold in (0, 1, 1638, 3277, 20000, 1 << 15):
        res = qk.attention_probs(q, keys, scale, cfg, threshold, "generation")
        probs, again = reference_rows(q, keys, scale, cfg, threshold, None)
        assert np.array_equal(res.probs, probs) and np.array_equal(res.refetched, again)
    # the exact edge: threshold == max_prob keeps the MSB row, max_prob + 1 refetches it
    first = qk.attention_probs(q, keys, scale, cfg, 0, "generation")
    assert not first.refetched.any()
    assert 0 < (first.max_prob < 3277).sum() < len(q)
    for i in range(len(q)):
        m = int(first.max_prob[i])
        if m == 1 << 15:                       # no register value above 1.0: never refetches
            continue
        keep = qk.attention_probs(q[i:i + 1], keys, scale, cfg, m, "generation")
        redo = qk.attention_probs(q[i:i + 1], keys, scale, cfg, m + 1, "generation")
        assert not keep.refetched[0] and redo.refetched[0]


def test_all_keys_equal_refetches_every_row():
    cfg = QKConfig(n_max=64)
    rng = np.random.default_rng(5)
    keys = np.tile(random_keys(rng, 1, cfg), (64, 1))
    q = random_queries(rng, 10, cfg)
    res = qk.attention_probs(q, keys, 1e-5, cfg, sm.threshold_code(0.05), "generation")
    assert res.refetched.all()
    assert np.all(res.probs == (1 << 15) // 64) and np.all(res.max_prob == 512)
    assert np.all(res.lsb_bytes == 64 * cfg.lsb_row_bytes)


def test_one_dominant_key_never_refetches():
    cfg = QKConfig(msb_bits=6, n_max=128)
    rng = np.random.default_rng(6)
    q = rng.integers(1, 2048, (10, 32))
    keys = rng.integers(-512, 0, (128, 32))
    keys[77] = 511
    for threshold in (sm.threshold_code(0.05), sm.threshold_code(0.1), sm.threshold_code(0.99)):
        res = qk.attention_probs(q, keys, 1e-4, cfg, threshold, "generation")
        assert not res.refetched.any() and np.all(res.lsb_bytes == 0)
        assert np.all(res.probs.argmax(axis=1) == 77)


def test_threshold_and_mode_errors():
    keys = np.zeros((4, 32), dtype=np.int64)
    q = np.zeros((1, 32), dtype=np.int64)
    with pytest.raises(TypeError, match="threshold must be the integer register value"):
        qk.attention_probs(q, keys, 1e-3, CFG, 0.1, "generation")
    with pytest.raises(ValueError, match=r"threshold=32769 is out of range"):
        qk.attention_probs(q, keys, 1e-3, CFG, 32769, "generation")
    with pytest.raises(ValueError, match="mode='decode' is not one of summarization, generation"):
        qk.attention_probs(q, keys, 1e-3, CFG, 0, "decode")
    with pytest.raises(ValueError, match=r"key 512 does not fit key_bits=10: allowed \[-512, 511\]"):
        qk.attention_probs(q, keys + 512, 1e-3, CFG, 0, "generation")
    with pytest.raises(ValueError, match=r"query element -2049 does not fit 12 bits"):
        qk.attention_probs(q - 2049, keys, 1e-3, CFG, 0, "generation")
    with pytest.raises(ValueError, match=r"keys must have shape \(N, head_dim=32\)"):
        qk.attention_probs(q, np.zeros((1025, 32), dtype=np.int64), 1e-3, CFG, 0, "generation")
    with pytest.raises(ValueError, match="alive must be a bool array"):
        qk.attention_probs(q, keys, 1e-3, CFG, 0, "generation", alive=np.ones(5, dtype=bool))


def expected_bytes(alive, refetched, mode, cfg):
    """Byte accounting written out: per row, the alive keys' rows not yet on chip."""
    msb_held = np.zeros(alive.shape[1], dtype=bool)
    lsb_held = msb_held.copy()
    msb, lsb = [], []
    for row, again in zip(alive, refetched):
        msb.append((row & ~msb_held).sum() * cfg.msb_row_bytes)
        lsb.append((row & ~lsb_held).sum() * cfg.lsb_row_bytes if again else 0)
        if mode == "summarization":
            msb_held |= row
            lsb_held |= row if again else False
    return np.array(msb), np.array(lsb)


@pytest.mark.parametrize("mode", ["generation", "summarization"])
def test_modes_byte_accounting(mode):
    cfg = QKConfig(n_max=128)
    rng = np.random.default_rng(7)
    keys = random_keys(rng, 100, cfg)
    q = random_queries(rng, 30, cfg)
    q[::3] //= 64                              # some flat rows: a mix of decisions
    alive = rng.random((30, 100)) < 0.8        # per-row alive: new keys appear later
    threshold = sm.threshold_code(0.1)
    res = qk.attention_probs(q, keys, 3e-6, cfg, threshold, mode, alive)
    assert 0 < res.refetched.sum() < 30
    msb, lsb = expected_bytes(alive, res.refetched, mode, cfg)
    assert np.array_equal(res.msb_bytes, msb) and np.array_equal(res.lsb_bytes, lsb)
    assert np.array_equal(res.dram_bytes, msb + lsb)
    if mode == "generation":
        assert np.array_equal(res.msb_bytes, alive.sum(axis=1) * 24)
    else:
        assert res.msb_bytes[0] == alive[0].sum() * 24
        assert res.msb_bytes.sum() == alive.any(axis=0).sum() * 24
        assert res.lsb_bytes.sum() <= alive.any(axis=0).sum() * 16
    # row by row with one Key buffer gives the same, and the mode never changes probabilities
    buffer = qk.KeyBuffer.empty(mode, 100)
    for i in range(30):
        row = qk.qk_row(q[i], keys, cfg, scale=3e-6, threshold=threshold, mode_state=buffer,
                        alive=alive[i])
        assert np.array_equal(row.probs, res.probs[i]) and row.refetched == res.refetched[i]
        assert (row.msb_bytes, row.lsb_bytes, row.max_prob) == (res.msb_bytes[i], res.lsb_bytes[i],
                                                                res.max_prob[i])
        assert row.dram_bytes == res.dram_bytes[i]
    other = qk.attention_probs(q, keys, 3e-6, cfg, threshold,
                               {"generation": "summarization"}.get(mode, "generation"), alive)
    assert np.array_equal(other.probs, res.probs) and np.array_equal(other.refetched, res.refetched)


def test_summarization_pays_each_plane_once():
    cfg = QKConfig(n_max=64)
    rng = np.random.default_rng(8)
    keys = np.tile(random_keys(rng, 1, cfg), (64, 1))         # flat: every row refetches
    q = random_queries(rng, 5, cfg)
    res = qk.attention_probs(q, keys, 1e-5, cfg, sm.threshold_code(0.1), "summarization")
    assert res.refetched.all()
    assert list(res.dram_bytes) == [64 * (24 + 16), 0, 0, 0, 0]
    gen = qk.attention_probs(q, keys, 1e-5, cfg, sm.threshold_code(0.1), "generation")
    assert list(gen.dram_bytes) == [64 * 40] * 5


def test_alive_holes():
    cfg = QKConfig(n_max=256)
    rng = np.random.default_rng(9)
    keys = random_keys(rng, 256, cfg)
    q = random_queries(rng, 12, cfg) // 8
    alive = np.ones(256, dtype=bool)
    alive[[0, 1, 2, 100, 101, 255]] = False
    alive[150:200] = False
    threshold = sm.threshold_code(0.1)
    for mode in ("generation", "summarization"):
        res = qk.attention_probs(q, keys, 2e-5, cfg, threshold, mode, alive)
        assert np.all(res.probs[:, ~alive] == 0)
        # the same as the compacted keys, and the pruned keys' values never matter
        compact = qk.attention_probs(q, keys[alive], 2e-5, cfg, threshold, mode)
        assert np.array_equal(res.probs[:, alive], compact.probs)
        assert np.array_equal(res.dram_bytes, compact.dram_bytes)
        junk = keys.copy()
        junk[~alive] = rng.integers(-512, 512, ((~alive).sum(), 32))
        again = qk.attention_probs(q, junk, 2e-5, cfg, threshold, mode, alive)
        assert np.array_equal(again.probs, res.probs) and np.array_equal(again.dram_bytes, res.dram_bytes)
    assert res.msb_bytes[0] == alive.sum() * 24
    with pytest.raises(ValueError, match="alive must keep at least one key in every row"):
        qk.attention_probs(q, keys, 2e-5, cfg, threshold, "generation", np.zeros(256, dtype=bool))


def test_single_key_and_n_max():
    cfg = CFG
    rng = np.random.default_rng(11)
    q = random_queries(rng, 4, cfg)
    one = qk.attention_probs(q, random_keys(rng, 1, cfg), 1e-3, cfg, 1 << 15, "generation")
    assert np.all(one.probs == 1 << 15) and not one.refetched.any()
    assert np.all(one.dram_bytes == 24)
    keys = random_keys(rng, cfg.n_max, cfg)
    keys[5] = 511
    keys[900] = -512
    for scale in (3e-6, 1e-4):
        res = qk.attention_probs(q, keys, scale, cfg, sm.threshold_code(0.1), "generation")
        full = qk.dot_scores(q, keys)
        assert np.all(res.msb_bytes == cfg.n_max * 24)
        for i in np.flatnonzero(res.refetched):
            assert prob_error(res.probs[i], full[i], scale, cfg) < TOLERANCE


# ---- the MiniLM report ---------------------------------------------------------------------

def report_head(trace, layer, head, cfg, threshold):
    """Both modes on one head; correctness asserted, the numbers returned for the report."""
    q, k, scale = minilm_head(trace, layer, head, cfg.key_bits)
    gen = qk.attention_probs(q, k, scale, cfg, threshold, "generation")
    summ = qk.attention_probs(q, k, scale, cfg, threshold, "summarization")
    assert np.array_equal(gen.probs, summ.probs) and np.array_equal(gen.refetched, summ.refetched)
    every = np.ones((len(q), len(k)), dtype=bool)
    dense_gen = qk.dense_bytes(every, "generation", cfg).sum()
    dense_sum = qk.dense_bytes(every, "summarization", cfg).sum()
    # at most both planes of every key: key_bits where dense has 12
    assert gen.dram_bytes.sum() * 12 <= dense_gen * cfg.key_bits
    assert summ.dram_bytes.sum() * 12 <= dense_sum * cfg.key_bits
    chosen = np.where(gen.refetched[:, None], qk.dot_scores(q, k),
                      qk.dot_scores(q, qk.msb_only(k, cfg)))
    err_float = prob_error(gen.probs, chosen, scale, cfg)
    assert err_float < TOLERANCE
    err_fp32 = float(np.abs(gen.probs / 2.0 ** cfg.prob_frac_bits - trace.probs[layer][head]).max())
    return dict(refetched=int(gen.refetched.sum()), rows=len(q), gen=int(gen.dram_bytes.sum()),
                dense_gen=int(dense_gen), summ=int(summ.dram_bytes.sum()), dense_sum=int(dense_sum),
                err_fp32=err_fp32, err_float=err_float)


def report_line(name, stats):
    total = {key: sum(s[key] for s in stats) for key in ("refetched", "rows", "gen", "dense_gen",
                                                          "summ", "dense_sum")}
    return (f"{name:>24} {total['refetched'] / total['rows']:>8.3f} "
            f"{total['gen'] / total['dense_gen']:>13.3f} {total['summ'] / total['dense_sum']:>13.3f} "
            f"{max(s['err_fp32'] for s in stats):>12.4f} {max(s['err_float'] for s in stats):>13.6f}")


@pytest.mark.slow
def test_minilm_refetch_and_dram_report(trace):
    """Refetch rate and DRAM bytes against a 12-bit dense fetch on real heads (printed)."""
    lines = [f"\nprogressive quantization on MiniLM passage 0 (L = {trace.length}): refetch rate; "
             f"DRAM bytes / 12-bit dense fetch (generation, summarization); max |p − fp32 model|; "
             f"max |p − float64 softmax of the same integer scores|",
             f"{'':>24} {'refetch':>8} {'gen PQ/dense':>13} {'sum PQ/dense':>13} "
             f"{'|p-fp32|':>12} {'|p-float|':>13}"]
    for msb_bits in (6, 8):
        cfg = QKConfig(msb_bits=msb_bits, n_max=512)
        for t in (0.05, 0.1):
            threshold = sm.threshold_code(t, cfg)
            stats = {(lyr, hd): report_head(trace, lyr, hd, cfg, threshold)
                     for lyr in range(M.NUM_LAYERS) for hd in range(M.NUM_HEADS)}
            tag = f"{msb_bits}+4 t={t}"
            lines.append(report_line(f"{tag} head L2H5", [stats[2, 5]]))
            for lyr in range(M.NUM_LAYERS):
                lines.append(report_line(f"{tag} layer {lyr}",
                                         [stats[lyr, h] for h in range(M.NUM_HEADS)]))
            lines.append(report_line(f"{tag} all 72 heads", list(stats.values())))
    print("\n".join(lines))
