"""Bit-accurate model of the Q/K fetcher with progressive quantization, the Q×K lanes and the
confidence check (rtl/fetch.py, rtl/qk.py), with its DRAM byte accounting.

**Key planes.** A key element is a ``key_bits = msb_bits + lsb_bits``-bit signed integer
``k``. Its MSB plane holds ``k >> lsb_bits`` (arithmetic shift: ``msb_bits`` signed), its LSB
plane ``k mod 2**lsb_bits`` (unsigned); the MSB-only key is ``k`` with its ``lsb_bits`` low
bits cleared, and ``(msb << lsb_bits) | lsb == k``. The widened key keeps its integer value.

**Memory** (:func:`plane_layout`, :func:`memory_image`): each plane is packed and
contiguous, key-major: element ``i = n·D + j`` (key n, dimension j) of a ``b``-bit plane
occupies bits ``i·b … i·b + b − 1`` of the plane, bit 0 being the least significant bit of
the plane's first byte. The MSB plane starts at byte 0, the LSB plane at
``round_up(N·D·msb_bits/8, PLANE_ALIGN)``; key n's rows are at ``base + n·row_bytes``, and a
row is a whole number of AXI beats (the config checks it).

**A row** (one query against the keys of one head, :func:`qk_row`):

1. fetch the MSB rows of the alive keys (pruned keys are never fetched), score
   ``q · msb_only(k)`` exactly, run the softmax (sim/softmax.py);
2. if ``max_prob < threshold`` (both in the probability format), fetch the LSB rows of the
   alive keys, score ``q · k`` with the full keys, run the softmax again: those are the
   row's probabilities and the row counts as *refetched*.

The probabilities and the decision depend only on the query, the keys, the alive mask and
the threshold, never on the mode or on earlier rows. The mode only changes the traffic
(:class:`KeyBuffer`): in ``generation`` mode nothing stays on chip, so every row fetches its
MSB rows and, when refetched, its LSB rows; in ``summarization`` mode a row fetched once for
the head stays in the Key buffer, so a row costs only the keys' rows not yet on chip (the
first row pays the MSB plane, the first refetched row the LSB plane).
"""

import dataclasses

import numpy as np

from ..configs.qk import MODES, QKConfig
from .softmax import ScaleConstant, scale_constant, softmax_stages

__all__ = ["split_planes", "msb_only", "recombine", "PlaneLayout", "plane_layout", "plane_bytes",
           "pack_plane", "unpack_plane", "memory_image", "read_keys", "check_keys", "check_queries",
           "dot_scores", "KeyBuffer", "RowResult", "QKResult", "qk_row", "attention_probs",
           "dense_bytes"]


# ---- key planes ---------------------------------------------------------------------------

def check_keys(keys, cfg=QKConfig()):
    """Validate keys (N×D integers of ``key_bits`` signed, 1 ≤ N ≤ n_max); return int64.

    Raises
    ------
    ValueError
        Naming the offending shape or value and what is allowed.
    """
    keys = np.asarray(keys)
    if keys.ndim != 2 or keys.shape[1] != cfg.head_dim or not 1 <= keys.shape[0] <= cfg.n_max:
        raise ValueError(f"keys must have shape (N, head_dim={cfg.head_dim}) with 1 ≤ N ≤ "
                         f"n_max={cfg.n_max}, not {keys.shape}")
    return _check_range(keys, cfg.key_bits, "key", f"key_bits={cfg.key_bits}")


def check_queries(q, cfg=QKConfig()):
    """Validate queries (B×D integers, 12-bit signed); return int64."""
    q = np.asarray(q)
    if q.ndim != 2 or q.shape[1] != cfg.head_dim or q.shape[0] < 1:
        raise ValueError(f"q must have shape (B, head_dim={cfg.head_dim}) with B ≥ 1, not {q.shape}")
    return _check_range(q, cfg.DATA_BITS, "query element", f"{cfg.DATA_BITS} bits")


def _check_range(x, bits, what, width):
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{what}s must be integers, not {x.dtype}")
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if x.min() < lo or x.max() > hi:
        bad = x.min() if x.min() < lo else x.max()
        raise ValueError(f"{what} {bad} does not fit {width}: allowed [{lo}, {hi}]")
    return x.astype(np.int64)


def split_planes(keys, cfg=QKConfig()):
    """Split keys into their MSB plane (signed) and LSB plane (unsigned) values.

    Parameters
    ----------
    keys : array_like of int
        N×D keys of ``key_bits`` signed.
    cfg : QKConfig

    Returns
    -------
    msb, lsb : numpy.ndarray
        int64 N×D: ``keys >> lsb_bits`` in ``[-2**(msb_bits-1), 2**(msb_bits-1))`` and
        ``keys & (2**lsb_bits - 1)``.
    """
    keys = check_keys(keys, cfg)
    return keys >> cfg.lsb_bits, keys & ((1 << cfg.lsb_bits) - 1)


def msb_only(keys, cfg=QKConfig()):
    """The keys as the MSB plane alone gives them: ``lsb_bits`` low bits cleared."""
    return np.asarray(keys, dtype=np.int64) & ~((1 << cfg.lsb_bits) - 1)


def recombine(msb, lsb, cfg=QKConfig()):
    """Concatenate the planes back into keys: ``(msb << lsb_bits) | lsb`` (exact)."""
    return (np.asarray(msb, dtype=np.int64) << cfg.lsb_bits) | np.asarray(lsb, dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class PlaneLayout:
    """Byte addresses of the two planes of ``n_keys`` keys in memory."""
    n_keys: int
    msb_base: int
    msb_bytes: int
    lsb_base: int
    lsb_bytes: int

    @property
    def total_bytes(self):
        return self.lsb_base + self.lsb_bytes

    def row_address(self, plane, key, cfg=QKConfig()):
        """Byte address of key ``key``'s row in ``plane`` (``"msb"`` or ``"lsb"``)."""
        if plane == "msb":
            return self.msb_base + key * cfg.msb_row_bytes
        return self.lsb_base + key * cfg.lsb_row_bytes


def plane_bytes(n_keys, cfg=QKConfig()):
    """Bytes of ``n_keys`` keys' rows in each plane: ``(n·D·msb_bits/8, n·D·lsb_bits/8)``."""
    return n_keys * cfg.msb_row_bytes, n_keys * cfg.lsb_row_bytes


def plane_layout(n_keys, cfg=QKConfig()):
    """Where the planes of ``n_keys`` keys live: MSB at 0, LSB at the next ``PLANE_ALIGN`` bytes."""
    if not 1 <= n_keys <= cfg.n_max:
        raise ValueError(f"n_keys={n_keys} is out of range: allowed [1, n_max={cfg.n_max}]")
    msb, lsb = plane_bytes(n_keys, cfg)
    lsb_base = -(-msb // cfg.PLANE_ALIGN) * cfg.PLANE_ALIGN
    return PlaneLayout(n_keys, 0, msb, lsb_base, lsb)


def pack_plane(values, bits):
    """Pack integers (two's complement, low ``bits`` kept) key-major, little-endian bits.

    Returns
    -------
    bytes
        ``ceil(values.size · bits / 8)`` bytes; element i at bits ``i·bits …``.
    """
    flat = np.asarray(values, dtype=np.int64).reshape(-1)
    bit_array = (flat[:, None] >> np.arange(bits)) & 1
    return np.packbits(bit_array.astype(np.uint8).reshape(-1), bitorder="little").tobytes()


def unpack_plane(data, count, bits, signed):
    """Inverse of :func:`pack_plane`: ``count`` elements of ``bits``, sign-extended if ``signed``."""
    raw = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
    weights = np.left_shift(np.int64(1), np.arange(bits, dtype=np.int64))
    values = raw[:count * bits].reshape(count, bits).astype(np.int64) @ weights
    if signed:
        values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values)
    return values


def memory_image(keys, cfg=QKConfig()):
    """The bytes the memory holds for ``keys``: both planes at :func:`plane_layout`'s addresses."""
    msb, lsb = split_planes(keys, cfg)
    layout = plane_layout(len(msb), cfg)
    image = bytearray(layout.total_bytes)
    image[layout.msb_base:layout.msb_base + layout.msb_bytes] = pack_plane(msb, cfg.msb_bits)
    image[layout.lsb_base:layout.lsb_base + layout.lsb_bytes] = pack_plane(lsb, cfg.lsb_bits)
    return bytes(image)


def read_keys(image, n_keys, cfg=QKConfig()):
    """Read ``n_keys`` keys back from a :func:`memory_image` (the fetcher's view, both planes)."""
    layout = plane_layout(n_keys, cfg)
    count = n_keys * cfg.head_dim
    msb = unpack_plane(image[layout.msb_base:layout.msb_base + layout.msb_bytes], count,
                       cfg.msb_bits, signed=True)
    lsb = unpack_plane(image[layout.lsb_base:layout.lsb_base + layout.lsb_bytes], count,
                       cfg.lsb_bits, signed=False)
    return recombine(msb, lsb, cfg).reshape(n_keys, cfg.head_dim)


# ---- Q×K and the row ----------------------------------------------------------------------

def dot_scores(q, keys):
    """Exact integer scores ``q · kᵀ`` (the multipliers and adder tree): B×N int64."""
    return np.asarray(q, dtype=np.int64) @ np.asarray(keys, dtype=np.int64).T


def _new_keys(alive, mode):
    """Per row, how many alive keys a fetch must bring: all (generation), or those no earlier
    row of the head brought (summarization). ``alive``: B×N bool."""
    if mode == "generation":
        return alive.sum(axis=1)
    earlier = np.zeros_like(alive)
    earlier[1:] = np.logical_or.accumulate(alive, axis=0)[:-1]
    return (alive & ~earlier).sum(axis=1)


@dataclasses.dataclass
class KeyBuffer:
    """Which keys' plane rows are on chip for the current head, and what fetching costs.

    Attributes
    ----------
    mode : str
        ``"summarization"`` (rows stay for the head) or ``"generation"`` (nothing stays).
    msb, lsb : numpy.ndarray
        bool N: the keys whose MSB / LSB rows are in the Key buffer.
    """
    mode: str
    msb: np.ndarray
    lsb: np.ndarray

    @classmethod
    def empty(cls, mode, n_keys):
        """A Key buffer holding nothing (the start of a head)."""
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not one of {', '.join(MODES)}")
        return cls(mode, np.zeros(n_keys, dtype=bool), np.zeros(n_keys, dtype=bool))

    def fetch(self, plane, alive, cfg=QKConfig()):
        """Fetch ``plane``'s rows of the alive keys not on chip; return the bytes read."""
        held = getattr(self, plane)
        need = alive & ~held
        if self.mode == "summarization":
            held |= alive
        row_bytes = cfg.msb_row_bytes if plane == "msb" else cfg.lsb_row_bytes
        return int(need.sum()) * row_bytes


@dataclasses.dataclass(frozen=True)
class RowResult:
    """One row: its probabilities, the decision and the bytes it caused to be read."""
    probs: np.ndarray      #: int64 N, ``prob_frac_bits`` fraction bits; pruned keys 0
    refetched: bool        #: the MSB-only max probability was below the threshold
    max_prob: int          #: the MSB-only row's max probability (what the threshold saw)
    msb_bytes: int
    lsb_bytes: int

    @property
    def dram_bytes(self):
        return self.msb_bytes + self.lsb_bytes


@dataclasses.dataclass(frozen=True)
class QKResult:
    """A batch of rows (see :func:`attention_probs`)."""
    probs: np.ndarray       #: int64 B×N
    refetched: np.ndarray   #: bool B
    max_prob: np.ndarray    #: int64 B, of the MSB-only pass
    msb_bytes: np.ndarray   #: int64 B
    lsb_bytes: np.ndarray   #: int64 B
    prob_frac_bits: int

    @property
    def dram_bytes(self):
        return self.msb_bytes + self.lsb_bytes


def _check_threshold(threshold, cfg):
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, np.integer)):
        raise TypeError(f"threshold must be the integer register value (see "
                        f"sim.softmax.threshold_code), not {threshold!r}")
    if not 0 <= threshold <= 1 << cfg.prob_frac_bits:
        raise ValueError(f"threshold={threshold} is out of range: allowed "
                         f"[0, 2**prob_frac_bits={1 << cfg.prob_frac_bits}]")
    return int(threshold)


def _alive_rows(alive, batch, n_keys):
    if alive is None:
        return np.ones((batch, n_keys), dtype=bool)
    alive = np.asarray(alive)
    if alive.dtype != bool or alive.shape not in ((n_keys,), (batch, n_keys)):
        raise ValueError(f"alive must be a bool array of shape ({n_keys},) or ({batch}, {n_keys}), "
                         f"not {alive.dtype} {alive.shape}")
    alive = np.broadcast_to(alive, (batch, n_keys))
    if not alive.any(axis=1).all():
        raise ValueError("alive must keep at least one key in every row")
    return alive


def _decide(q, keys, const, cfg, threshold, alive):
    """Both passes of every row, vectorized: (probs, refetched, MSB-only max_prob)."""
    first = softmax_stages(dot_scores(q, msb_only(keys, cfg)), const, cfg, alive)
    refetched = first.max_prob < threshold
    probs = first.probs
    if refetched.any():
        second = softmax_stages(dot_scores(q[refetched], keys), const, cfg, alive[refetched])
        probs = probs.copy()
        probs[refetched] = second.probs
    return probs, refetched, first.max_prob


def qk_row(q, keys, cfg=QKConfig(), *, scale, threshold, mode_state, alive=None):
    """One query against one head's keys: MSB-only pass, confidence check, maybe a refetch.

    Parameters
    ----------
    q : array_like of int
        The query, D elements of 12 bits signed.
    keys : array_like of int
        N×D full keys (``key_bits`` signed).
    cfg : QKConfig
    scale : float or ScaleConstant
        Real value of one unit of ``q·k``.
    threshold : int
        The threshold register (:func:`~attnforge.sim.softmax.threshold_code`).
    mode_state : KeyBuffer
        The head's Key buffer; updated with what this row fetched.
    alive : array_like of bool, optional
        N: the keys that survived pruning.

    Returns
    -------
    RowResult
    """
    q = check_queries(np.asarray(q)[None, :], cfg)
    keys = check_keys(keys, cfg)
    alive = _alive_rows(alive, 1, len(keys))
    const = scale if isinstance(scale, ScaleConstant) else scale_constant(scale, cfg)
    probs, refetched, max_prob = _decide(q, keys, const, cfg, _check_threshold(threshold, cfg), alive)
    msb = mode_state.fetch("msb", alive[0], cfg)
    lsb = mode_state.fetch("lsb", alive[0], cfg) if refetched[0] else 0
    return RowResult(probs[0], bool(refetched[0]), int(max_prob[0]), msb, lsb)


def attention_probs(q_batch, keys, scale, cfg, threshold, mode, alive=None):
    """Rows of one head in order, sharing one Key buffer: what the block outputs for a batch.

    Parameters
    ----------
    q_batch : array_like of int
        B×D queries, 12-bit signed.
    keys : array_like of int
        N×D full keys, ``key_bits`` signed.
    scale : float or ScaleConstant
        Real value of one unit of ``q·k``.
    cfg : QKConfig
    threshold : int
        The threshold register (:func:`~attnforge.sim.softmax.threshold_code`).
    mode : str
        ``"summarization"`` or ``"generation"``.
    alive : array_like of bool, optional
        N (all rows) or B×N: keys that survived pruning.

    Returns
    -------
    QKResult
        Identical, row for row, to :func:`qk_row` calls in order on one fresh
        :class:`KeyBuffer`.
    """
    q = check_queries(q_batch, cfg)
    keys = check_keys(keys, cfg)
    threshold = _check_threshold(threshold, cfg)
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {', '.join(MODES)}")
    alive = _alive_rows(alive, len(q), len(keys))
    const = scale if isinstance(scale, ScaleConstant) else scale_constant(scale, cfg)
    probs, refetched, max_prob = _decide(q, keys, const, cfg, threshold, alive)
    msb = _new_keys(alive, mode) * cfg.msb_row_bytes
    lsb = _new_keys(alive & refetched[:, None], mode) * cfg.lsb_row_bytes
    return QKResult(probs, refetched, max_prob, msb, lsb, cfg.prob_frac_bits)


def dense_bytes(alive, mode, cfg=QKConfig(), bits=12):
    """Bytes per row of the baseline: fetching whole ``bits``-bit keys, no planes.

    Parameters
    ----------
    alive : array_like of bool
        B×N alive masks, one row per query.
    mode : str
        ``"generation"``: every row fetches its alive keys; ``"summarization"``: keys stay.
    cfg : QKConfig
    bits : int, optional
        Bits per key element (12: SpAtten's dense datapath width).

    Returns
    -------
    numpy.ndarray
        int64 B.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {', '.join(MODES)}")
    return _new_keys(np.asarray(alive, dtype=bool), mode) * (cfg.head_dim * bits // 8)
