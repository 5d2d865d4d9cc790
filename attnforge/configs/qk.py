"""Parameters of the Q/K fetcher, Q×K lanes and softmax (rtl/fetch.py, rtl/qk.py, rtl/softmax.py;
sim/qk.py, sim/softmax.py; tb/qk.py).

Formats, shared bit for bit by the RTL and the numpy models (sim/softmax.py has the
step-by-step arithmetic):

* **Q** is ``DATA_BITS`` = 12-bit signed. **Keys** are ``key_bits = msb_bits + lsb_bits``-bit
  signed integers, stored as an MSB plane (the top ``msb_bits``, signed) and an LSB plane
  (the low ``lsb_bits``, unsigned); the bitwidth converter sign-extends them to 12 bits
  *keeping their integer value* (right-aligned), so a score is the exact integer ``q·k``.
* **Memory**: each plane packed, key-major, element ``i = n·D + j`` at bit ``i·b`` of its
  plane (little-endian bit order inside bytes); MSB plane at byte 0, LSB plane at
  ``round_up(N·D·msb_bits/8, PLANE_ALIGN)``. One key's row of a plane is a whole number of
  AXI beats (checked), so the bytes counted are the bytes moved.
* **Scores** ``s = q·k``: ``score_bits = 2·12 + log2(D)`` signed, exact (no rounding).
* **Scale constant**: ``scale·log2(e)·2**score_frac_bits ≈ scale_mant · 2**-scale_shift``,
  ``scale_mant`` an unsigned ``SCALE_MANT_BITS``-bit mantissa in ``[2**15, 2**16)``,
  ``scale_shift`` a ``SCALE_SHIFT_BITS``-bit right shift.
* **Exponent** ``y = min((d·scale_mant + half) >> scale_shift, y_max)``, ``d = max − s ≥ 0``:
  unsigned, ``y_int_bits`` integer and ``score_frac_bits`` fraction bits, in log2 units
  (the unnormalized probability is ``2**-y``).
* **Exp**: ``2**-y = 2**-int(y) · 2**-frac(y)``; a ROM of ``exp_table_size = 2**score_frac_bits``
  entries ``round(2**(EXP_BITS − f/exp_table_size))`` (``EXP_BITS + 1`` bits wide: entry 0
  is exactly ``2**EXP_BITS``), shifted left by ``sum_frac_bits − EXP_BITS`` guard bits and
  right by ``int(y)`` with round half up: a term of ``sum_frac_bits`` fraction bits.
* **Sum** of the terms: ``sum_bits`` unsigned; ≥ 1.0 as the row maximum's term is exactly 1.
* **Reciprocal**: leading-one detect, truncate the sum to ``RECIP_BITS`` bits, a
  ``2**RECIP_SEED_BITS``-entry seed ROM and one Newton step (two multiplies).
* **Probabilities**: unsigned, ``prob_frac_bits`` fraction bits, ``prob_frac_bits + 1`` bits
  wide (1.0 is representable).
* **Threshold**: a run-time register in the probability format; a row is recomputed with
  full keys exactly when ``max_prob < threshold``.
"""

import dataclasses
import functools
import math

from ..config import BlockConfig, ConfigError, in_range, param, power_of_two

__all__ = ["QKConfig", "MODES"]

#: the run-time reuse modes of the Key buffer
MODES = ("summarization", "generation")


def _one_of(*values):
    """Check that the value is one of ``values``."""
    def check(value):
        return value in values
    check.describe = "one of " + ", ".join(str(v) for v in values)
    return check


def _round_half_up(x):
    """``floor(x + 1/2)`` for a float ``x`` (the tables' rounding)."""
    return math.floor(x + 0.5)


@functools.lru_cache(maxsize=None)
def _exp_table(size, bits):
    return tuple(_round_half_up(math.ldexp(2.0 ** (-f / size), bits)) for f in range(size))


@functools.lru_cache(maxsize=None)
def _recip_seed_table(recip_bits, seed_bits):
    num = 1 << (recip_bits + seed_bits + 1)
    return tuple((2 * num + den) // (2 * den)
                 for den in ((1 << (seed_bits + 1)) + 2 * i + 1 for i in range(1 << seed_bits)))


@dataclasses.dataclass(frozen=True)
class QKConfig(BlockConfig):
    """The Q/K fetcher's, Q×K lanes' and softmax's parameters.

    Keys of ``head_dim`` elements are fetched MSB plane first through an AXI4 read master of
    ``axi_data_width`` bits; ``multipliers`` 12×12 multipliers produce
    ``multipliers / head_dim`` scores per cycle; rows have ``N ≤ n_max`` keys. The softmax
    formats are described in the module docstring.
    """

    head_dim: int = param(32, "D: elements per query and key", power_of_two(4, 256))
    msb_bits: int = param(6, "bits of a key's MSB plane (signed)", _one_of(4, 6, 8))
    lsb_bits: int = param(4, "bits of a key's LSB plane (unsigned)", _one_of(4))
    multipliers: int = param(64, "12×12 multipliers in the Q×K lanes (a multiple of head_dim)",
                             in_range(1, 1024))
    n_max: int = param(1024, "most keys per row", power_of_two(1, 16384))
    axi_data_width: int = param(64, "AXI4 read data width (bits)", power_of_two(32, 512))
    score_frac_bits: int = param(8, "fraction bits of the scaled score difference y (log2 units); "
                                    "the exp ROM has 2**score_frac_bits entries", in_range(4, 12))
    sum_frac_bits: int = param(22, "fraction bits of the exp terms and their sum",
                               in_range(16, 28))
    prob_frac_bits: int = param(15, "fraction bits of the output probabilities and the threshold",
                                in_range(8, 16))
    key_banks: int = param(2, "Key buffer banks of the qk block: in generation mode, rows whose "
                              "fetch and compute overlap", power_of_two(1, 4))

    #: Q and the widened keys on the datapath (signed)
    DATA_BITS = 12
    #: unsigned mantissa of the scale constant, in [2**15, 2**16)
    SCALE_MANT_BITS = 16
    #: right shift of the scale constant (0 … 63)
    SCALE_SHIFT_BITS = 6
    #: fraction bits of an exp ROM entry (entries are EXP_BITS + 1 bits wide)
    EXP_BITS = 16
    #: the sum, normalized, and the reciprocal: unsigned RECIP_BITS-bit words
    RECIP_BITS = 17
    #: index bits of the reciprocal seed ROM
    RECIP_SEED_BITS = 7
    #: the Newton step's error term 2**(2·RECIP_BITS-1) − m·r0 is shifted right by this
    #: (arithmetic) to an 18-bit signed multiplier operand
    RECIP_ERR_SHIFT = 9
    #: byte alignment of the LSB plane's base address
    PLANE_ALIGN = 64

    def validate(self):
        if self.multipliers % self.head_dim:
            raise ConfigError(f"multipliers={self.multipliers} must be a multiple of "
                              f"head_dim={self.head_dim}")
        for name in ("msb_bits", "lsb_bits"):
            row = self.head_dim * getattr(self, name)
            if row % self.axi_data_width:
                raise ConfigError(
                    f"a key's {name[:3].upper()} row is head_dim × {name} = {row} bits, not a whole "
                    f"number of axi_data_width={self.axi_data_width}-bit beats; use an "
                    f"axi_data_width dividing {row}")
        need = self.n_max.bit_length() - 1 + 12
        if self.sum_frac_bits < need:
            raise ConfigError(
                f"sum_frac_bits={self.sum_frac_bits} is too few for n_max={self.n_max}: rounding "
                f"n_max exp terms could move a probability by n_max·2**-(sum_frac_bits+1); "
                f"need ≥ log2(n_max) + 12 = {need}")

    # ---- derived widths ----------------------------------------------------------------

    @property
    def D(self):
        """Alias of ``head_dim``."""
        return self.head_dim

    @property
    def key_bits(self):
        """Signed width of a full key: ``msb_bits + lsb_bits``."""
        return self.msb_bits + self.lsb_bits

    @property
    def scores_per_cycle(self):
        return self.multipliers // self.head_dim

    @property
    def score_bits(self):
        """Signed width of an exact dot product of 12-bit vectors of ``head_dim`` terms."""
        return 2 * self.DATA_BITS + (self.head_dim - 1).bit_length()

    @property
    def exp_table_size(self):
        return 1 << self.score_frac_bits

    @property
    def exp_guard_bits(self):
        """Left shift of an exp ROM entry into the sum's format."""
        return self.sum_frac_bits - self.EXP_BITS

    @property
    def y_int_bits(self):
        """Integer bits of y: enough that a saturated y gives a zero exp term."""
        return (self.sum_frac_bits + 2).bit_length()

    @property
    def y_bits(self):
        return self.y_int_bits + self.score_frac_bits

    @property
    def y_max(self):
        """Saturation value of y (all ones)."""
        return (1 << self.y_bits) - 1

    @property
    def sum_bits(self):
        """Unsigned width of the sum of up to ``n_max`` terms, each ≤ 1.0."""
        return self.sum_frac_bits + 1 + (self.n_max - 1).bit_length()

    @property
    def prob_bits(self):
        """Unsigned width of a probability (1.0 = ``2**prob_frac_bits`` included)."""
        return self.prob_frac_bits + 1

    @property
    def threshold_bits(self):
        """The threshold register: the probability format."""
        return self.prob_bits

    @property
    def msb_row_bytes(self):
        """Bytes of one key in the MSB plane."""
        return self.head_dim * self.msb_bits // 8

    @property
    def lsb_row_bytes(self):
        """Bytes of one key in the LSB plane."""
        return self.head_dim * self.lsb_bits // 8

    @property
    def beat_bytes(self):
        return self.axi_data_width // 8

    # ---- ROM contents (the RTL and sim/softmax.py both read these) ---------------------------

    def exp_table(self):
        """The exp ROM: ``round_half_up(2**(EXP_BITS - f / exp_table_size))`` for each f.

        Returns
        -------
        tuple of int
            ``exp_table_size`` entries, ``EXP_BITS + 1`` bits wide, entry 0 = ``2**EXP_BITS``.
        """
        return _exp_table(self.exp_table_size, self.EXP_BITS)

    def recip_seed_table(self):
        """The reciprocal seed ROM: ``1/x`` at the middle of each of ``2**RECIP_SEED_BITS`` bins.

        Entry ``i`` covers the normalized sum ``x ∈ [1 + i/2**k, 1 + (i+1)/2**k)`` (k =
        ``RECIP_SEED_BITS``) and holds ``round_half_up(2**RECIP_BITS / (1 + (i + 1/2)/2**k))``,
        computed in integers; the midpoint minimizes the worst seed error of the bin.

        Returns
        -------
        tuple of int
            ``2**RECIP_SEED_BITS`` entries in ``(2**(RECIP_BITS-1), 2**RECIP_BITS)``.
        """
        return _recip_seed_table(self.RECIP_BITS, self.RECIP_SEED_BITS)
