"""sim/topk.py against an independent reference (np.argpartition with the tie rule)."""

import numpy as np
import pytest

from attnforge.configs.topk import TopKConfig
from attnforge.config import ConfigError
from attnforge.sim import topk as model
from attnforge.tb.vectors import adversarial_vectors, random_vectors

CONFIGS = [
    TopKConfig(),
    TopKConfig(width=8, n_max=64, lanes=2, comparators=4),
    TopKConfig(width=10, n_max=128, lanes=4, comparators=8, radix_bits=4),   # padded key
    TopKConfig(width=12, n_max=256, lanes=8, comparators=8, radix_bits=3),
]


def reference_mask(scores, k):
    """Keep all > the k-th largest (found by argpartition), then the earliest ties."""
    kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
    keep = scores > kth
    need = k - keep.sum()
    ties = np.flatnonzero(scores == kth)
    keep[ties[:need]] = True
    return keep


def _cases(cfg, count, seed):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = cfg.lanes * int(rng.integers(1, cfg.n_max // cfg.lanes + 1))
        pool = {**random_vectors(cfg, n, rng), **adversarial_vectors(cfg, n, rng)}
        name = list(pool)[rng.integers(len(pool))]
        k = int(rng.choice([1, n, rng.integers(1, n + 1)]))
        yield name, pool[name], k


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"w{c.width}n{c.n_max}l{c.lanes}c{c.comparators}r{c.radix_bits}")
def test_select_matches_reference(cfg):
    for name, scores, k in _cases(cfg, 1500, seed=cfg.width):
        got = model.select(scores, k, cfg)
        want = reference_mask(scores, k)
        assert np.array_equal(got.mask, want), (name, len(scores), k)
        assert got.mask.sum() == k
        kth = np.sort(scores)[::-1][k - 1]
        # The threshold is the k-th largest, or (an exact bucket) the bucket's lowest key.
        assert got.threshold <= kth
        assert not np.any((scores > got.threshold) & (scores < kth))
        equal = np.count_nonzero(scores == got.threshold)
        assert np.count_nonzero(scores > got.threshold) + min(got.ties, equal) == k
        assert np.array_equal(model.topk_mask(scores, k), want)


def test_pass_sizes_and_worst_case_bound():
    cfg = TopKConfig()
    for name, scores, k in _cases(cfg, 400, seed=7):
        sel = model.select(scores, k, cfg)
        n = len(scores)
        assert len(sel.pass_sizes) <= cfg.levels - 1
        assert not sel.pass_sizes or sel.pass_sizes[0] == n
        assert all(a >= b for a, b in zip(sel.pass_sizes, sel.pass_sizes[1:]))
        assert model.select_stage_cycles(sel, cfg) <= model.worst_case_select_cycles(n, cfg)
    # Two values differing in the last digit are the worst case: every pass reads every
    # score (they are not all equal, and the picked bucket never holds exactly k).
    pair = np.where(np.random.default_rng(3).random(1024) < 0.5, 80, 81)
    sel = model.select(pair, 100, cfg)
    assert model.select_stage_cycles(sel, cfg) == model.worst_case_select_cycles(1024, cfg)
    # All equal: the first pass finds its candidates all equal and ends the select.
    assert model.select(np.full(1024, 5), 100, cfg).pass_sizes == (1024,)


def test_k_is_clamped_like_the_hardware():
    scores = np.array([3, 1, 2, 2])
    assert model.select(scores, 0).mask.sum() == 1
    assert model.select(scores, 9).mask.sum() == 4


def test_cycle_model_shape():
    cfg = TopKConfig(width=8, n_max=64, lanes=2, comparators=4)
    rng = np.random.default_rng(0)
    vectors = [rng.integers(-128, 128, n) for n in (64, 8, 32)]
    timing = model.cycles(vectors, [3, 8, 1], cfg)
    assert timing.first_in[0] == 0
    assert np.all(np.diff(timing.first_in) > 0)
    assert np.all(timing.latency > np.array([64, 8, 32]) // cfg.lanes)
    assert timing.total == timing.last_out[-1] + 1


def test_paper_model_visits_at_least_one_round():
    rng = np.random.default_rng(1)
    scores = rng.integers(-1000, 1000, 1024)
    assert model.paper_select_cycles(scores, 128, comparators=16, rng=0) >= 1024 // 16 + 3
    # Sorted input with the pivot always the minimum: one round per element at worst.
    assert model.paper_select_cycles(np.arange(64), 64, comparators=16, rng=0) >= 4 + 3


@pytest.mark.parametrize("scores, k, message", [
    (np.zeros((2, 12), int), [1, 1], "multiple of lanes"),
    (np.zeros((1, 2048), int), [1], "n_max"),
    (np.full((1, 16), 40000), [1], "does not fit width"),
    (np.zeros((1, 16), int), [17], "k=17 out of range"),
    (np.zeros((1, 16), int), [0], "k=0 out of range"),
    (np.zeros((1, 16)), [1], "must be integers"),
])
def test_check_inputs_names_the_fault(scores, k, message):
    with pytest.raises(ValueError, match=message):
        model.check_inputs(scores, np.asarray(k), TopKConfig())


@pytest.mark.parametrize("kwargs, message", [
    ({"lanes": 3}, "lanes=3 is out of range"),
    ({"comparators": 4}, "comparators=4 must be ≥ lanes=8"),
    ({"width": 6, "radix_bits": 4}, "width=6 must be ≥"),
    ({"n_max": 8}, "n_max=8 must be ≥ comparators"),
])
def test_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TopKConfig(**kwargs)
