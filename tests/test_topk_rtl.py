"""The generated top-k engine under cocotb, on Verilator and Icarus, bit-exact against sim/topk.py.

Every test streams vectors of varying N and k back to back. Throttled runs add random
valid gaps and ready backpressure; full-rate runs also check the cycle model exactly.
"""

import numpy as np
import pytest

from attnforge.configs.topk import TopKConfig
from attnforge.sim import minilm
from attnforge.sim import topk as model
from attnforge.tb.topk import compare, simulate
from attnforge.tb.vectors import adversarial_vectors, random_vectors

pytestmark = pytest.mark.sim

SMALL = TopKConfig(width=8, n_max=64, lanes=2, comparators=4)
PADDED = TopKConfig(width=10, n_max=128, lanes=4, comparators=8, radix_bits=4)
PAPER = TopKConfig(width=16, n_max=1024, lanes=8, comparators=16)


def mixed_stream(cfg, seed, count):
    """``count`` vectors of random lengths, random and adversarial, with k ∈ {1, N, random}."""
    rng = np.random.default_rng(seed)
    vectors, ks = [], []
    for index in range(count):
        n = cfg.n_max if index == 0 else cfg.lanes * int(rng.integers(1, cfg.n_max // cfg.lanes + 1))
        pool = {**random_vectors(cfg, n, rng), **adversarial_vectors(cfg, n, rng)}
        vectors.append(list(pool.values())[index % len(pool)])
        ks.append(int([1, n, rng.integers(1, n + 1)][index % 3]))
    return vectors, ks


def run_and_check(vectors, ks, cfg, simulator, build_root, *, throttled, seed=0):
    rates = dict(in_rate=0.7, out_rate=0.6) if throttled else {}
    result = simulate(vectors, ks, cfg, sim=simulator, seed=seed, build_root=build_root, **rates)
    compare(vectors, ks, result, cfg)
    if not throttled:
        timing = model.cycles(vectors, ks, cfg)
        assert np.array_equal(result["cycles"], timing.latency), (result["cycles"], timing.latency)
        assert result["total_cycles"] == timing.total
    return result


@pytest.mark.parametrize("cfg", [pytest.param(SMALL, marks=pytest.mark.xdist_group("topk-small")),
                                 pytest.param(PADDED, marks=pytest.mark.xdist_group("topk-padded"))],
                         ids=["small", "padded"])
@pytest.mark.parametrize("throttled", [True, False], ids=["throttled", "full-rate"])
def test_small_configs(cfg, throttled, simulator, build_root):
    vectors, ks = mixed_stream(cfg, seed=int(throttled) + cfg.width, count=30)
    run_and_check(vectors, ks, cfg, simulator, build_root, throttled=throttled, seed=5)


@pytest.mark.slow
@pytest.mark.xdist_group("topk-paper")
@pytest.mark.parametrize("throttled", [True, False], ids=["throttled", "full-rate"])
def test_paper_config(throttled, simulator, build_root):
    vectors, ks = mixed_stream(PAPER, seed=11 + throttled, count=14)
    run_and_check(vectors, ks, PAPER, simulator, build_root, throttled=throttled, seed=7)


@pytest.mark.slow
@pytest.mark.xdist_group("topk-paper")
def test_minilm_rows(simulator, build_root):
    """Real attention scores: MiniLM layer-2 rows quantized to 16 bits, N = 256, k = N/16 .. N/2."""
    rows = minilm.score_rows(PAPER.width, n=256, layer=2, passage=0)[:12]
    ks = [16, 64, 128] * 4
    run_and_check(list(rows), ks, PAPER, simulator, build_root, throttled=False)


@pytest.mark.xdist_group("topk-small")
def test_minilm_rows_small(simulator, build_root):
    """Real rows at 8 bits on the small engine, N = 64, with backpressure."""
    rows = minilm.score_rows(SMALL.width, n=64, layer=3, passage=1)[:16]
    ks = [1, 4, 16, 32, 64, 8, 2, 60] * 2
    run_and_check(list(rows), ks, SMALL, simulator, build_root, throttled=True, seed=3)
