"""Test vectors of the top-k engine: the regression batch and its adversarial inputs.

Pure numpy (no cocotb), so pytest, ``attnforge verify`` and user scripts share them.
:func:`regression_batch` makes one seed's :class:`Batch`: random and adversarial vectors
of several lengths N, each with k ∈ {1, N, random}, shuffled together so that one
simulation streams them back to back.
"""

import dataclasses

import numpy as np

__all__ = ["Batch", "adversarial_vectors", "random_vectors", "regression_lengths",
           "regression_batch", "stream_rates"]

#: Rates of valid (input) and ready (output) per cycle: throttled on odd seeds.
THROTTLED_RATES = (0.7, 0.6)
FULL_RATES = (1.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Batch:
    """Vectors streamed back to back in one simulation."""
    scores: list         #: B int64 vectors, of lengths that may differ
    k: np.ndarray        #: B int64
    kinds: tuple         #: B names of how each vector was made (keys of the generators)

    @property
    def lengths(self):
        return np.array([len(row) for row in self.scores], dtype=np.int64)

    def __len__(self):
        return len(self.k)


def _score_range(cfg):
    return -(1 << (cfg.width - 1)), (1 << (cfg.width - 1)) - 1


def adversarial_vectors(cfg, n, rng):
    """``{name: vector}`` of length ``n``: orderings, ties and extremes that stress selection."""
    lo, hi = _score_range(cfg)
    values = rng.integers(lo, hi + 1, size=n)
    a = int(rng.integers(lo, hi))
    b = int(rng.integers(a + 1, hi + 1))
    even = 2 * int(rng.integers(lo // 2, hi // 2))
    one_max = np.full(n, lo)
    one_max[rng.integers(n)] = hi
    vectors = {
        "sorted": np.sort(values),
        "reverse_sorted": np.sort(values)[::-1],
        "all_equal": np.full(n, rng.integers(lo, hi + 1)),
        "two_values": np.where(rng.random(n) < 0.5, a, b),
        # differ in the lowest bit only: every select pass reads every score (the worst case)
        "adjacent_pair": np.where(rng.random(n) < 0.5, even, even + 1),
        "extremes": np.where(rng.random(n) < 0.5, lo, hi),
        "all_min": np.full(n, lo),
        "all_max": np.full(n, hi),
        "one_max": one_max,
    }
    return {name: v.astype(np.int64) for name, v in vectors.items()}


def random_vectors(cfg, n, rng):
    """``{name: vector}`` of length ``n``: uniform over the full range, and a narrow range (many ties)."""
    lo, hi = _score_range(cfg)
    return {"random": rng.integers(lo, hi + 1, size=n, dtype=np.int64),
            "random_narrow": rng.integers(-3, 4, size=n, dtype=np.int64)}


def regression_lengths(cfg, seed):
    """The vector lengths N of a seed: multiples of lanes ≤ n_max, in the order drawn.

    Seed 0 covers both ends (n_max and lanes) and one random N; other seeds draw a long N
    (n_max itself on even seeds), a random N and a short one (at most four beats). Three
    distinct lengths whenever n_max allows.
    """
    rng = np.random.default_rng([seed, 1])
    beats = cfg.n_max // cfg.lanes
    random_n = cfg.lanes * int(rng.integers(1, beats + 1))
    if seed == 0:
        lengths = [cfg.n_max, cfg.lanes, random_n]
    else:
        long_n = cfg.n_max if seed % 2 == 0 else cfg.lanes * int(rng.integers(beats // 2 + 1, beats + 1))
        lengths = [long_n, random_n, cfg.lanes * int(rng.integers(1, min(4, beats) + 1))]
    lengths = list(dict.fromkeys(lengths))
    for n in cfg.lanes * (1 + rng.permutation(beats)):     # three distinct N where there are
        if len(lengths) >= min(3, beats):
            break
        if n not in lengths:
            lengths.append(int(n))
    return lengths


def stream_rates(seed):
    """``(in_rate, out_rate)`` of a seed: gaps and backpressure on odd seeds, full rate on even."""
    return THROTTLED_RATES if seed % 2 else FULL_RATES


def regression_batch(cfg, seed):
    """The regression :class:`Batch` of ``cfg`` for ``seed``.

    For every length of :func:`regression_lengths`, each random and adversarial vector
    appears with k = 1, k = N and a random k; the whole batch is in a seeded random order.
    """
    rows, ks, kinds = [], [], []
    for n in regression_lengths(cfg, seed):
        rng = np.random.default_rng([seed, n])
        vectors = {**random_vectors(cfg, n, rng), **adversarial_vectors(cfg, n, rng)}
        for name, vector in vectors.items():
            for k in (1, n, int(rng.integers(1, n + 1))):
                rows.append(vector)
                ks.append(k)
                kinds.append(name)
    order = np.random.default_rng([seed, 2]).permutation(len(rows))
    return Batch(scores=[rows[i] for i in order],
                 k=np.array(ks, dtype=np.int64)[order],
                 kinds=tuple(kinds[i] for i in order))
