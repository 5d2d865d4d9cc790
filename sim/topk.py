"""Bit-accurate model and cycle model of the top-k engine (rtl/topk.py).

Semantics, pinned here for the RTL and the docs alike: the engine keeps every score
strictly greater than the k-th largest score, then the earliest scores equal to it until
exactly k are kept, and emits them in input order with their indices.

:func:`select` follows the hardware's radix passes and records what they did, which
:func:`cycles` turns into the RTL's cycle counts (exact when input is never starved and
output never stalled; under gaps and backpressure the counts only grow).
"""

import dataclasses

import numpy as np

from ..configs.topk import TopKConfig

__all__ = ["topk_mask", "select", "Selection", "check_inputs", "cycles", "Timing",
           "worst_case_select_cycles", "paper_select_cycles"]


def topk_mask(scores, k):
    """The selection as a boolean mask over ``scores`` (one vector), by the tie rule."""
    scores = np.asarray(scores)
    kth = np.sort(scores)[::-1][k - 1]
    keep = scores > kth
    ties = np.flatnonzero(scores == kth)[:k - keep.sum()]
    keep[ties] = True
    return keep


@dataclasses.dataclass(frozen=True)
class Selection:
    """What the select stage found for one vector."""
    threshold: int       #: the k-th largest score
    ties: int            #: scores equal to it that are kept (the earliest ones)
    pass_sizes: tuple    #: candidates read by each select pass (N, then the FIFO sizes)
    mask: np.ndarray     #: the selected scores

    @property
    def indices(self):
        return np.flatnonzero(self.mask)


def _keys(cfg, scores):
    pad = cfg.key_bits - cfg.width
    return (scores.astype(np.int64) + (1 << (cfg.width - 1))) << pad


def select(scores, k, cfg=TopKConfig()):
    """Run the engine's algorithm on one vector; return a :class:`Selection`."""
    scores = np.asarray(scores, dtype=np.int64)
    n = len(scores)
    k = min(max(int(k), 1), n)
    keys = _keys(cfg, scores)
    digits = [(keys >> ((cfg.levels - j) * cfg.radix_bits)) & (cfg.buckets - 1)
              for j in range(1, cfg.levels + 1)]
    candidates = np.ones(n, dtype=bool)
    threshold_key, k_left, pass_sizes = 0, k, []
    for level in range(cfg.levels):
        if level >= 1:
            # A pass reads the previous pass's candidates (the whole vector first).
            pass_sizes.append(int(candidates_before.sum()))
        counts = np.bincount(digits[level][candidates], minlength=cfg.buckets)
        at_least = np.cumsum(counts[::-1])[::-1]
        bucket = int(np.flatnonzero(at_least >= k_left)[-1])
        above = int(at_least[bucket + 1]) if bucket + 1 < cfg.buckets else 0
        k_left -= above
        threshold_key |= bucket << ((cfg.levels - 1 - level) * cfg.radix_bits)
        candidates_before = candidates
        candidates = candidates & (digits[level] == bucket)
    threshold = (threshold_key >> (cfg.key_bits - cfg.width)) - (1 << (cfg.width - 1))
    keep = scores > threshold
    equal = np.flatnonzero(scores == threshold)
    keep[equal[:k_left]] = True
    return Selection(int(threshold), int(k_left), tuple(pass_sizes), keep)


def check_inputs(scores, k, cfg=TopKConfig()):
    """Validate a batch (``scores`` B×N, ``k`` B) against ``cfg``; raise ValueError naming the fault."""
    scores = np.asarray(scores)
    k = np.asarray(k)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-D array (vectors × N), not shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.integer):
        raise ValueError(f"scores must be integers, not {scores.dtype}")
    batch, n = scores.shape
    if k.shape != (batch,):
        raise ValueError(f"k must have shape ({batch},) to match scores, not {k.shape}")
    if not np.issubdtype(k.dtype, np.integer):
        raise ValueError(f"k must be integers, not {k.dtype}")
    if not 1 <= n <= cfg.n_max or n % cfg.lanes:
        raise ValueError(f"N={n} must be a multiple of lanes={cfg.lanes} in [{cfg.lanes}, {cfg.n_max}] (n_max)")
    lo, hi = -(1 << (cfg.width - 1)), (1 << (cfg.width - 1)) - 1
    if batch and (scores.min() < lo or scores.max() > hi):
        bad = scores.min() if scores.min() < lo else scores.max()
        raise ValueError(f"score {bad} does not fit width={cfg.width}: allowed [{lo}, {hi}]")
    if batch and (k.min() < 1 or k.max() > n):
        bad = k.min() if k.min() < 1 else k.max()
        raise ValueError(f"k={bad} out of range: allowed [1, N={n}]")


# ---- cycle model ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Timing:
    """Cycles of a batch streamed back to back (input never starved, output never stalled)."""
    first_in: np.ndarray     #: cycle each vector's first beat is accepted
    last_out: np.ndarray     #: cycle each vector's last beat leaves
    select: np.ndarray       #: cycles of each vector's select stage

    @property
    def latency(self):
        """First input beat accepted to last output beat, inclusive, per vector."""
        return self.last_out - self.first_in + 1

    @property
    def total(self):
        return int(self.last_out[-1] - self.first_in[0] + 1)


def select_stage_cycles(selection, cfg=TopKConfig()):
    """Cycles the select stage holds a vector: level-1 resolve, then scan + drain + resolve per pass."""
    total = 1
    for level, size in enumerate(selection.pass_sizes, start=2):
        drain = cfg.LAST_PASS_DRAIN if level == cfg.levels else cfg.PASS_DRAIN
        total += -(-size // cfg.comparators) + drain + 1
    return total


def _emit_schedule(keep_words, cfg, start):
    """Cycle-level replay of the emit stage (read, zero eliminator, packer) for one vector.

    ``keep_words``: kept scores per word read. Returns (cycle of the last word read,
    cycle the last output beat leaves), mirroring rtl/topk.py and rtl/compact.py.
    """
    # The emit stage's pipeline is: held word -> eliminator stage 1 -> stage 2 -> packer.
    raise NotImplementedError


def cycles(scores, k, cfg=TopKConfig()):
    """Predict the RTL's cycles for a batch (``scores`` B×N, ``k`` B); see :class:`Timing`."""
    raise NotImplementedError


def worst_case_select_cycles(n, cfg=TopKConfig()):
    """The select stage's bound for any input of length ``n``: every pass reads all ``n``."""
    words = -(-n // cfg.comparators)
    return 1 + sum(words + (cfg.LAST_PASS_DRAIN if level == cfg.levels else cfg.PASS_DRAIN) + 1
                   for level in range(2, cfg.levels + 1))


def paper_select_cycles(scores, k, comparators=16, rng=None):
    """SpAtten's random-pivot quick-select rounds, by [R]'s latency model (ceil(size/P)+3 per round).

    For comparison in ``attnforge bench``; returns the select cycles for one vector.
    """
    rng = np.random.default_rng(rng)
    values = np.asarray(scores)
    k_left, total = int(k), 0
    while True:
        total += -(-len(values) // comparators) + 3
        pivot = values[rng.integers(len(values))]
        greater, equal = values[values > pivot], np.count_nonzero(values == pivot)
        if len(greater) >= k_left:
            values = greater
        elif len(greater) + equal >= k_left:
            return total
        else:
            k_left -= len(greater) + equal
            values = values[values < pivot]
