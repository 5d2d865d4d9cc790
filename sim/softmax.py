"""Bit-accurate model of the fixed-point softmax (rtl/softmax.py), row by row.

Every step is an integer operation the hardware does the same way (widths in
:class:`~attnforge.configs.qk.QKConfig`; ``F = score_frac_bits``, ``E = sum_frac_bits``,
``G = E − EXP_BITS``, ``P = prob_frac_bits``, ``RB = RECIP_BITS``, ``k = RECIP_SEED_BITS``):

1. **Max**: ``smax`` = the largest score of the row's alive keys; ``d = smax − s ≥ 0``.
2. **Scale** (:func:`scale_constant`): ``y = min((d·mant + half) >> shift, y_max)``, where
   ``half = (1 << shift) >> 1`` (round half up) and ``mant·2**-shift ≈ scale·log2(e)·2**F``;
   ``y`` is ``(s − smax)·scale`` in log2 units with ``F`` fraction bits, saturated.
3. **Exp**: ``i = y >> F``, ``f = y mod 2**F``; ``term = ((EXP[f] << G) + half) >> i`` with
   ``half = (1 << i) >> 1``: ``2**-y`` with ``E`` fraction bits. The row maximum's term is
   exactly ``2**E`` (1.0); dead keys contribute nothing.
4. **Sum**: ``S = Σ term`` (exact), ``S ≥ 2**E``.
5. **Reciprocal**: ``z = ⌊log2 S⌋``; ``m = S >> (z − RB + 1)`` (truncated, ``RB`` bits, leading
   one at bit ``RB − 1``); seed ``r0 = SEED[(m >> (RB − 1 − k)) mod 2**k]``; one Newton step
   ``err = (2**(2RB−1) − m·r0) >> RECIP_ERR_SHIFT`` (arithmetic), ``r = r0 +
   ((r0·err + 2**(c−1)) >> c)`` with ``c = 2RB − 1 − RECIP_ERR_SHIFT``, then ``r = min(r,
   2**RB − 1)``. So ``r ≈ 2**(RB + z) / S`` (relative error below 2**-15, checked over
   every ``m``).
6. **Normalize**: ``p = ((term >> G)·r + half) >> (RB + z − G − P)``, round half up: the
   probability with ``P`` fraction bits (17 × 17-bit product). ``max_prob`` is the same
   expression for the term ``2**E``, known right after the reciprocal.

The error against a float64 softmax of the same integer scores is dominated by step 3's
rounding of ``y`` to ``2**-F`` (a relative error of at most ``ln 2 · 2**-(F+1)`` per term,
so at most about ``2**-(F+3)`` on a probability); the tests bound it by 1/256.
"""

import dataclasses
import math

import numpy as np

from ..configs.qk import QKConfig

__all__ = ["ScaleConstant", "scale_constant", "threshold_code", "check_scores", "exponent",
           "exp_terms", "reciprocal", "normalize", "SoftmaxStages", "softmax_stages",
           "softmax_fixed", "SOFTMAX_FIXED_CYCLES", "SOFTMAX_TERM_TURNAROUND", "softmax_cycles",
           "softmax_interval"]


@dataclasses.dataclass(frozen=True)
class ScaleConstant:
    """The hardware's scale register: ``scale·log2(e)·2**score_frac_bits ≈ mant·2**-shift``."""
    mant: int     #: unsigned, ``SCALE_MANT_BITS`` bits, in ``[2**15, 2**16)``
    shift: int    #: right shift, ``SCALE_SHIFT_BITS`` bits

    def value(self, cfg=QKConfig()):
        """The real scale (one score unit) this constant stands for."""
        return math.ldexp(self.mant, -self.shift - cfg.score_frac_bits) / math.log2(math.e)


def scale_constant(scale, cfg=QKConfig()):
    """Turn the real value of one score unit into the hardware's mantissa and shift.

    Parameters
    ----------
    scale : float
        Real value of one unit of the integer dot product ``q·k`` (``1/√D`` and the Q and K
        quantization scales included), > 0.
    cfg : QKConfig

    Returns
    -------
    ScaleConstant
        ``mant = round_half_up(scale·log2(e)·2**(score_frac_bits + shift))`` normalized into
        ``[2**15, 2**16)``.

    Raises
    ------
    ValueError
        If ``scale`` is not a positive finite number or needs a shift outside ``[0, 63]``.
    """
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive finite number, not {scale!r}")
    v = scale * math.log2(math.e) * (1 << cfg.score_frac_bits)
    top = cfg.SCALE_MANT_BITS
    shift = top - math.frexp(v)[1]
    mant = math.floor(math.ldexp(v, shift) + 0.5)
    if mant == 1 << top:
        mant, shift = mant >> 1, shift - 1
    max_shift = (1 << cfg.SCALE_SHIFT_BITS) - 1
    if not 0 <= shift <= max_shift:
        lo = ScaleConstant(1 << (top - 1), max_shift).value(cfg)
        hi = ScaleConstant((1 << top) - 1, 0).value(cfg)
        raise ValueError(f"scale={scale!r} is out of range: allowed [{lo:.3g}, {hi:.3g}]")
    return ScaleConstant(mant, shift)


def threshold_code(threshold, cfg=QKConfig()):
    """The threshold register for a real threshold: ``round_half_up(threshold·2**prob_frac_bits)``.

    Parameters
    ----------
    threshold : float
        A probability in ``[0, 1]``.
    cfg : QKConfig

    Returns
    -------
    int
        In ``[0, 2**prob_frac_bits]``; a row refetches exactly when ``max_prob < code``.
    """
    threshold = float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold!r} is out of range: allowed [0, 1]")
    return math.floor(math.ldexp(threshold, cfg.prob_frac_bits) + 0.5)


def check_scores(scores, cfg=QKConfig()):
    """Validate integer scores against ``score_bits``; return them as int64.

    Raises
    ------
    ValueError
        Naming the offending value and the allowed range.
    """
    scores = np.asarray(scores)
    if not np.issubdtype(scores.dtype, np.integer):
        raise ValueError(f"scores must be integers, not {scores.dtype}")
    if scores.ndim < 1 or scores.shape[-1] < 1:
        raise ValueError(f"scores must have at least one key per row, not shape {scores.shape}")
    lo, hi = -(1 << (cfg.score_bits - 1)), (1 << (cfg.score_bits - 1)) - 1
    if scores.min() < lo or scores.max() > hi:
        bad = scores.min() if scores.min() < lo else scores.max()
        raise ValueError(f"score {bad} does not fit score_bits={cfg.score_bits}: allowed [{lo}, {hi}]")
    return scores.astype(np.int64)


def exponent(d, const, cfg=QKConfig()):
    """Step 2: ``y = min((d·mant + half) >> shift, y_max)`` for score differences ``d ≥ 0``."""
    d = np.asarray(d, dtype=np.int64)
    half = (1 << const.shift) >> 1
    return np.minimum((d * const.mant + half) >> const.shift, cfg.y_max)


def exp_terms(y, cfg=QKConfig()):
    """Step 3: ``2**-y`` with ``sum_frac_bits`` fraction bits, from the exp ROM and a shift."""
    y = np.asarray(y, dtype=np.int64)
    table = np.asarray(cfg.exp_table(), dtype=np.int64) << cfg.exp_guard_bits
    i = y >> cfg.score_frac_bits
    f = y & (cfg.exp_table_size - 1)
    return (table[f] + (np.left_shift(1, i) >> 1)) >> i


def reciprocal(total, cfg=QKConfig()):
    """Step 5: leading-one position ``z`` and ``r ≈ 2**(RECIP_BITS + z) / total``.

    Parameters
    ----------
    total : array_like of int
        Sums, each ≥ ``2**(RECIP_BITS - 1)``.

    Returns
    -------
    z, r : numpy.ndarray
        int64 arrays of ``total``'s shape.
    """
    total = np.asarray(total, dtype=np.int64)
    rb, k = cfg.RECIP_BITS, cfg.RECIP_SEED_BITS
    z = np.frexp(total.astype(np.float64))[1].astype(np.int64) - 1   # exact below 2**53
    m = total >> (z - (rb - 1))
    r0 = np.asarray(cfg.recip_seed_table(), dtype=np.int64)[(m >> (rb - 1 - k)) & ((1 << k) - 1)]
    err = ((1 << (2 * rb - 1)) - m * r0) >> cfg.RECIP_ERR_SHIFT
    c = 2 * rb - 1 - cfg.RECIP_ERR_SHIFT
    r = r0 + ((r0 * err + (1 << (c - 1))) >> c)
    return z, np.minimum(r, (1 << rb) - 1)


def normalize(terms, z, r, cfg=QKConfig()):
    """Step 6: probabilities with ``prob_frac_bits`` fraction bits, rounded half up.

    ``z`` and ``r`` (from :func:`reciprocal`) broadcast against ``terms``.
    """
    shift = cfg.RECIP_BITS + np.asarray(z) - cfg.exp_guard_bits - cfg.prob_frac_bits
    product = (np.asarray(terms, dtype=np.int64) >> cfg.exp_guard_bits) * r
    return (product + (np.left_shift(1, shift) >> 1)) >> shift


@dataclasses.dataclass(frozen=True)
class SoftmaxStages:
    """Every intermediate of :func:`softmax_stages` (rows along all axes but the last)."""
    const: ScaleConstant
    smax: np.ndarray       #: row maximum of the alive scores (..., 1)
    y: np.ndarray          #: scaled differences (..., N); dead keys: ``y_max``
    terms: np.ndarray      #: exp terms (..., N); dead keys: 0
    total: np.ndarray      #: their sum (...)
    z: np.ndarray          #: leading-one position of the sum (...)
    recip: np.ndarray      #: the reciprocal ``r`` (...)
    probs: np.ndarray      #: probabilities (..., N); dead keys: 0
    max_prob: np.ndarray   #: the row's largest probability (...)


def _alive_mask(alive, shape):
    if alive is None:
        return np.ones(shape, dtype=bool)
    alive = np.broadcast_to(np.asarray(alive, dtype=bool), shape)
    if not alive.any(axis=-1).all():
        raise ValueError("every row needs at least one alive key")
    return alive


def softmax_stages(scores, scale, cfg=QKConfig(), alive=None):
    """Run the softmax on integer score rows and return every intermediate.

    Parameters
    ----------
    scores : array_like of int
        Dot products ``q·k``, shape ``(..., N)``, within ``score_bits``.
    scale : float or ScaleConstant
        The real value of one score unit, or the hardware constant made from it.
    cfg : QKConfig
    alive : array_like of bool, optional
        Keys taking part (broadcast against ``scores``); pruned keys get probability 0.

    Returns
    -------
    SoftmaxStages
    """
    s = check_scores(scores, cfg)
    const = scale if isinstance(scale, ScaleConstant) else scale_constant(scale, cfg)
    alive = _alive_mask(alive, s.shape)
    smax = np.where(alive, s, np.iinfo(np.int64).min).max(axis=-1, keepdims=True)
    y = np.where(alive, exponent(np.where(alive, smax - s, 0), const, cfg), cfg.y_max)
    terms = np.where(alive, exp_terms(y, cfg), 0)
    total = terms.sum(axis=-1)
    z, r = reciprocal(total, cfg)
    probs = normalize(terms, z[..., None], r[..., None], cfg)
    max_prob = normalize(1 << cfg.sum_frac_bits, z, r, cfg)
    return SoftmaxStages(const, smax, y, terms, total, z, r, probs, max_prob)


def softmax_fixed(scores_int, scale, cfg=QKConfig(), alive=None):
    """The fixed-point softmax: probabilities as unsigned ints with ``prob_frac_bits`` fraction bits.

    Parameters
    ----------
    scores_int : array_like of int
        Dot products ``q·k``, shape ``(..., N)``.
    scale : float or ScaleConstant
        The real value of one score unit (``1/√D`` and quantization scales included).
    cfg : QKConfig
    alive : array_like of bool, optional
        Keys taking part; the others get 0.

    Returns
    -------
    numpy.ndarray
        int64, shape of ``scores_int``; ``probs / 2**prob_frac_bits`` approximates
        ``softmax(scores_int · scale)`` within 1/256.
    """
    return softmax_stages(scores_int, scale, cfg, alive).probs


#: the fixed part of a lone row's cycles in rtl/softmax.py (pipelines and start cycles)
SOFTMAX_FIXED_CYCLES = 38
#: the fixed part of a term slot's turnaround in rtl/softmax.py: from its row's sum-pass start
#: to the end of its normalize pass, less the two passes (pipelines, reciprocal, handovers)
SOFTMAX_TERM_TURNAROUND = 30
#: term slots in rtl/softmax.py
SOFTMAX_TERM_SLOTS = 4


def softmax_cycles(n_keys, cfg=QKConfig()):
    """Cycles the RTL softmax takes for a lone row of ``n_keys`` scores.

    From the row's first input handshake to its last output handshake, both included, with
    the input at full rate and the output always ready: three passes of ``B = ceil(n_keys /
    L)`` beats (``L = scores_per_cycle``), the max and adder trees (``ceil_log2(L)``
    registers each) and :data:`SOFTMAX_FIXED_CYCLES`. Rows back to back leave one every
    ``B + 1`` cycles.
    """
    if not 1 <= n_keys <= cfg.n_max:
        raise ValueError(f"n_keys={n_keys} is out of range: allowed [1, n_max={cfg.n_max}]")
    lanes = cfg.scores_per_cycle
    beats = -(-n_keys // lanes)
    return 3 * beats + 2 * (lanes - 1).bit_length() + SOFTMAX_FIXED_CYCLES


def softmax_interval(n_keys, cfg=QKConfig()):
    """Average cycles per row of the RTL softmax for rows of ``n_keys`` back to back.

    Input at full rate, output always ready. Each pass takes ``B + 1`` cycles per row
    (``B = ceil(n_keys / L)`` beats and a start cycle); a term slot is held for ``2·B +``
    :data:`SOFTMAX_TERM_TURNAROUND` ``+ ceil_log2(L)`` cycles and there are four, so short
    rows leave in bursts at that average. Returns a float.
    """
    if not 1 <= n_keys <= cfg.n_max:
        raise ValueError(f"n_keys={n_keys} is out of range: allowed [1, n_max={cfg.n_max}]")
    lanes = cfg.scores_per_cycle
    beats = -(-n_keys // lanes)
    turnaround = 2 * beats + SOFTMAX_TERM_TURNAROUND + (lanes - 1).bit_length()
    return max(beats + 1, turnaround / SOFTMAX_TERM_SLOTS)
