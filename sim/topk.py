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

__all__ = ["topk_mask", "select", "Selection", "check_inputs", "check_batch", "cycles", "Timing",
           "select_stage_cycles",
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
    threshold: int       #: the emit's threshold: the k-th largest score, or below it (see :func:`select`)
    ties: int            #: the tie budget: scores equal to the threshold kept (the earliest ones)
    pass_sizes: tuple    #: candidates read by each select pass (N, then the FIFO sizes)
    mask: np.ndarray     #: the selected scores

    @property
    def indices(self):
        return np.flatnonzero(self.mask)


def _keys(cfg, scores):
    pad = cfg.key_bits - cfg.width
    return (scores.astype(np.int64) + (1 << (cfg.width - 1))) << pad


def select(scores, k, cfg=TopKConfig()):
    """Run the engine's algorithm on one vector; return a :class:`Selection`.

    The digits are resolved most significant first, and the select stops early in two
    cases: the chosen bucket holds exactly the rank still wanted (every candidate in it is
    kept: the threshold is the bucket's lowest key, the tie budget its population), or a
    pass's candidates are all equal (the threshold is their value, the tie budget the rank
    still wanted).
    """
    scores = np.asarray(scores, dtype=np.int64)
    n = len(scores)
    k = min(max(int(k), 1), n)
    keys = _keys(cfg, scores)
    digits = [(keys >> ((cfg.levels - j) * cfg.radix_bits)) & (cfg.buckets - 1)
              for j in range(1, cfg.levels + 1)]
    candidates = np.ones(n, dtype=bool)
    threshold_key, k_left, pass_sizes = 0, k, []
    candidates_before = candidates
    for level in range(cfg.levels):
        if level >= 1:
            # A pass reads the previous pass's candidates (the whole vector first).
            pass_sizes.append(int(candidates_before.sum()))
        counts = np.bincount(digits[level][candidates], minlength=cfg.buckets)
        at_least = np.cumsum(counts[::-1])[::-1]
        bucket = int(np.flatnonzero(at_least >= k_left)[-1])
        above = int(at_least[bucket + 1]) if bucket + 1 < cfg.buckets else 0
        exact = at_least[bucket] == k_left
        # A pass (not the receive histogram, not the last pass) also checks whether the
        # candidates it histograms are all equal: then their value is the k-th largest.
        uniform = (1 <= level < cfg.levels - 1
                   and keys[candidates].min() == keys[candidates].max())
        k_left -= above
        threshold_key |= bucket << ((cfg.levels - 1 - level) * cfg.radix_bits)
        candidates_before = candidates
        candidates = candidates & (digits[level] == bucket)
        if uniform:
            threshold_key = int(keys[candidates][0])
            break
        if exact:
            # Every candidate of the bucket is kept: the threshold is the bucket's lowest
            # key (its digits below resolved to zero), and the ties budget, the bucket's
            # population, admits every candidate equal to it; no further pass is needed.
            break
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


def check_batch(vectors, k, cfg=TopKConfig()):
    """Validate vectors of possibly different lengths and their k; raise ValueError naming the fault."""
    k = np.asarray(k)
    if k.shape != (len(vectors),):
        raise ValueError(f"k must have one entry per vector ({len(vectors)}), not shape {k.shape}")
    for row, row_k in zip(vectors, k):
        check_inputs(np.asarray(row)[None, :], np.asarray([row_k]), cfg)


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
    """Cycles the select stage holds a vector: a load, two per digit resolved, scan + drain per pass.

    The first pass's reads overlap the top digit's resolve (``FIRST_PASS_OVERLAP`` cycles).
    """
    total = 1 + 2 * (len(selection.pass_sizes) + 1)
    if selection.pass_sizes:
        total -= cfg.FIRST_PASS_OVERLAP
    for level, size in enumerate(selection.pass_sizes, start=2):
        drain = cfg.LAST_PASS_DRAIN if level == cfg.levels else cfg.PASS_DRAIN
        total += -(-size // cfg.comparators) + drain
    return total


def cycles(scores, k, cfg=TopKConfig()):
    """Predict the RTL's cycles for vectors (``scores``: B×N, or B vectors) streamed back to back.

    A cycle-by-cycle replay of the engine's control: the receive stage, the select stage
    (whose duration :func:`select_stage_cycles` gives), the emit stage's read, zero
    eliminator and packer, and the three slots they hand to one another. Exact for an
    input that is never starved and an output that is never stalled.
    """
    batch = len(scores)
    C, L = cfg.comparators, cfg.lanes
    lengths = [len(row) for row in scores]
    selections = [select(row, row_k, cfg) for row, row_k in zip(scores, k)]
    kept = [np.pad(sel.mask, (0, -len(sel.mask) % C)).reshape(-1, C).sum(axis=1) for sel in selections]
    durations = [select_stage_cycles(sel, cfg) for sel in selections]

    FREE, RECEIVED, SELECTED = 0, 1, 2
    state = [FREE] * 3
    first_in = np.zeros(batch, dtype=np.int64)
    last_out = np.zeros(batch, dtype=np.int64)
    select_cycles = np.array(durations, dtype=np.int64)
    recv_vec = recv_beat = recv_slot = 0
    sel_vec = sel_slot = 0
    sel_done = None                       # cycle of the running vector's final resolve
    emit_vec = emit_slot = emit_word = 0
    emitting = False
    # The emit pipeline: a hand-over cycle loads a SELECTED slot, then read, fetched, landed,
    # compared, classified, decided, the zero eliminator's three stages, then a FIFO
    # (entries readable two cycles after their write, one cycle after the previous entry's
    # read) that the packer drains; a word is read only with one of its credits.
    # Each stage holds (kept, last) of a word, or None.
    read = fetched = landed = compared = classed = decided = stage1 = stage2 = stage3 = None
    queue, last_pop, credits = [], -1, cfg.EMIT_FIFO_DEPTH
    fill, ending, out_vec = 0, False, 0
    left_before = False                    # a vector's last word left the packer the cycle before
    taken_before = 0                       # entries the packer output in the cycle before
    shifted = placed = None                # (kept, last) in the packer's two rotation stages
    cycle = 0
    received = None                        # the slot whose histogram completes this cycle
    while out_vec < batch:
        updates = []
        # receive (the histogram, and so RECEIVED, one cycle behind the last handshake)
        if received is not None:
            updates.append((received, RECEIVED))
            received = None
        if recv_vec < batch and state[recv_slot] == FREE:
            if recv_beat == 0:
                first_in[recv_vec] = cycle
            if recv_beat == lengths[recv_vec] // L - 1:
                received = recv_slot
                recv_slot, recv_vec, recv_beat = (recv_slot + 1) % 3, recv_vec + 1, 0
            else:
                recv_beat += 1
        # select
        if sel_done is None and sel_vec < batch and state[sel_slot] == RECEIVED:
            sel_done = cycle + durations[sel_vec] - 1
        elif sel_done == cycle:
            updates.append((sel_slot, SELECTED))
            sel_slot, sel_vec, sel_done = (sel_slot + 1) % 3, sel_vec + 1, None
        # emit: the packer's output, the FIFO's head, then the reads behind them
        out_valid = fill > L or ending
        taken = min(fill, L) if out_valid else 0
        out_last = ending and fill <= L
        placed_count, placed_last = placed if placed is not None else (0, False)
        shifted_count, shifted_last = shifted if shifted is not None else (0, False)
        head_ready = bool(queue) and cycle >= queue[0][0] + 2 and cycle > last_pop
        packer_ready = (not ending and not left_before and not placed_last and not shifted_last
                        and fill + placed_count + shifted_count + taken_before
                        <= cfg.emit_packer_depth - C)
        popped = head_ready and packer_ready
        given, next_ending = placed_count, ending or placed_last
        placed, shifted = shifted, None
        if popped:
            _, shifted = queue.pop(0)
            last_pop = cycle
        left_before = out_valid and out_last      # the packer's i.ready waits a cycle after it
        if left_before:
            last_out[out_vec] = cycle + 1         # through the packer's output buffer
            out_vec += 1
            next_ending = False
        issued = None
        if emitting and credits:
            final = emit_word == len(kept[emit_vec]) - 1
            issued = (int(kept[emit_vec][emit_word]), final)
            emit_word += 1
            if final:
                updates.append((emit_slot, FREE))
                emitting = False
                emit_slot, emit_vec = (emit_slot + 1) % 3, emit_vec + 1
        elif not emitting and state[emit_slot] == SELECTED:
            emitting, emit_word = True, 0          # the hand-over cycle: parameters loaded
        credits += int(popped) - int(issued is not None)
        if stage3 is not None:
            queue.append((cycle, stage3))
        stage3, stage2, stage1, decided, classed, compared, landed, fetched, read = \
            stage2, stage1, decided, classed, compared, landed, fetched, read, issued
        fill, ending, taken_before = fill - taken + given, next_ending, taken
        for slot, value in updates:
            state[slot] = value
        cycle += 1
    return Timing(first_in, last_out, select_cycles)


def worst_case_select_cycles(n, cfg=TopKConfig()):
    """The select stage's bound for any input of length ``n``: every pass reads all ``n``."""
    words = -(-n // cfg.comparators)
    return 1 + 2 * cfg.levels - cfg.FIRST_PASS_OVERLAP + sum(words + (cfg.LAST_PASS_DRAIN if level == cfg.levels else cfg.PASS_DRAIN)
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
