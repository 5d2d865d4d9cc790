"""Parameters of the butterfly dataflow array (rtl/butterfly/, sim/butterfly.py, tb/butterfly.py).

Fixed-point formats (shared, bit for bit, by the RTL and the numpy model):

* **Data**: each real component (``re``, ``im``) is a ``width``-bit signed integer. The
  models work on these integers directly; a result ``y`` with exponent ``scale_log2``
  stands for ``y * 2**scale_log2``.
* **Coefficients** (FFT twiddles and learned butterfly weights): ``twiddle_bits``-bit signed
  integers in Q2.F, ``F = twiddle_bits - 2`` fraction bits, so the representable range is
  ``[-2, 2 - 2**-F]``. Q2 rather than Q1 makes the twiddle ``W = 1`` (every stage's first
  pair) and the real-mode identity exact; the bit it costs is worth ~−84 dB of twiddle
  error at the default 16 bits, far below the datapath's rounding noise.
* **Butterfly output**: the exact sum of products (``x0 · 2**F ± W·x1``, or
  ``a·x0 + b·x1``) divided by ``2**(F + shift)`` with round half up (add ``2**(F+shift-1)``,
  arithmetic shift right), then saturated to ``width`` bits. ``shift`` (``SHIFT_MIN`` …
  ``SHIFT_MAX``, signed) is chosen per butterfly at run time: the FFT's classic policy is 1
  on every stage; block floating point uses negative shifts to bring small blocks up.
"""

import dataclasses
import math

from ..config import BlockConfig, ConfigError, in_range, param, power_of_two

__all__ = ["ButterflyConfig"]


@dataclasses.dataclass(frozen=True)
class ButterflyConfig(BlockConfig):
    """The butterfly PE's and array's parameters.

    A PE computes one radix-2 butterfly per cycle on ``width``-bit complex data with
    ``twiddle_bits``-bit coefficients (both ≤ 18, so every product fits one ECP5
    MULT18X18D; a PE uses :attr:`MULTIPLIERS_PER_PE` of them). The array takes ``lanes``
    samples per cycle, runs transforms of any power-of-two length up to ``n_max`` and holds
    ``lanes/2 · log2(n_max)`` PEs (one column per stage), so the PE count follows from those two.
    """

    width: int = param(16, "data bits per real component (signed)", in_range(4, 18))
    twiddle_bits: int = param(16, "bits of a twiddle or weight (signed Q2.(twiddle_bits-2))",
                              in_range(7, 18))
    n_max: int = param(1024, "longest transform (points)", power_of_two(2, 65536))
    lanes: int = param(8, "samples per cycle into and out of the array", power_of_two(1, 64))
    frame_max: int = param(4096, "largest FNet frame L×D (samples) of its transpose buffer",
                           power_of_two(4, 1 << 20))
    linear: int = param(1, "1: the array also runs butterfly linear layers (run-time weight "
                           "memories, an input bit-reversal buffer); 0: FFT only", in_range(0, 1))

    #: run-time PE modes (the ``mode`` field of a PE beat)
    MODE_FFT = 0
    MODE_REAL = 1
    #: range of the per-butterfly right shift beyond the coefficient's fraction bits
    #: (negative: a left shift); the whole range of a 3-bit signed field, and
    #: ``F + SHIFT_MIN ≥ 1`` as ``twiddle_bits ≥ 7``
    SHIFT_MIN = -4
    SHIFT_MAX = 3
    #: cycles from a PE input handshake to its output beat when never stalled:
    #: operand register (DSP inputs) → product register (DSP output) → product register
    #: beside the DSP (rtl/dsp.multiply) → product-sum register → rounded-sum register → output
    PE_LATENCY = 6
    #: registers a beat passes in an active PE column of the array: input register, operand
    #: register (beside the twiddle ROM's read register), the PE's
    COLUMN_LATENCY = PE_LATENCY + 2
    #: real multipliers per two-mode PE (``linear = 1``): 4 (complex product wr·xr − wi·xi,
    #: wr·xi + wi·xr, or a real 2×2 a·x0, b·x1, c·x0, d·x1); an FFT-only PE uses 3, or none
    #: where its twiddles are only 1 and −j or those of W8, W16 (shifts and adds;
    #: :attr:`array_multipliers`)
    MULTIPLIERS_PER_PE = 4

    def validate(self):
        if self.lanes > self.n_max:
            raise ConfigError(f"lanes={self.lanes} must be ≤ n_max={self.n_max}")
        if self.frame_max < self.lanes * self.lanes:
            raise ConfigError(f"frame_max={self.frame_max} must be ≥ lanes²={self.lanes ** 2}: "
                              f"the smallest FNet frame is lanes × lanes")

    def manifest_notes(self):
        """Formats, scaling and the streaming array's size, for the generated module's manifest."""
        pes = self.lanes // 2 * self.stages_max
        return {"formats": {
                    "data": f"signed {self.width}-bit integer per real component (re, im); a "
                            f"complex sample is one {2 * self.width}-bit element, re in the low half",
                    "coefficient": f"signed Q2.{self.coef_frac} ({self.twiddle_bits} bits)",
                    "rounding": "round half up after each butterfly, then saturate",
                },
                "scaling": "fixed: shift 1 per stage; output × 2**log2n ≈ numpy.fft.fft(input)",
                "array": {"pe_columns": self.stages_max, "pes": pes,
                          "multipliers": self.array_multipliers,
                          "pe_latency": self.PE_LATENCY,
                          "transform_lengths": f"2**log2n, {max(self.lanes, 2)} … {self.n_max}"}}

    @property
    def array_multipliers(self):
        """Real multipliers of one streaming array: ``4`` per PE with ``linear = 1``; FFT-only,
        ``3`` per PE but none in the first four columns (twiddles 1 and −j only, then those of
        W8 and W16: constant products by shifts and adds)."""
        per_column = self.lanes // 2
        if self.linear:
            return self.MULTIPLIERS_PER_PE * per_column * self.stages_max
        return 3 * per_column * max(self.stages_max - 4, 0)

    @property
    def coef_frac(self):
        """Fraction bits of a coefficient (Q2.F): ``twiddle_bits - 2``."""
        return self.twiddle_bits - 2

    @property
    def shift_bits(self):
        """Bits of the signed ``shift`` field."""
        return max(self.SHIFT_MAX.bit_length(), (-self.SHIFT_MIN - 1).bit_length()) + 1

    @property
    def stages_max(self):
        return self.n_max.bit_length() - 1

    @property
    def data_max(self):
        return (1 << (self.width - 1)) - 1

    @property
    def data_min(self):
        return -(1 << (self.width - 1))

    def quantize_coef(self, value):
        """A real coefficient (float) as a Q2.F integer: round half up, saturate."""
        q = math.floor(value * (1 << self.coef_frac) + 0.5)
        return max(-(1 << (self.twiddle_bits - 1)), min((1 << (self.twiddle_bits - 1)) - 1, q))

    def twiddle(self, k, n):
        """The quantized forward-FFT twiddle ``W_n^k = exp(-2πi·k/n)`` as ``(re, im)`` ints.

        Pure Python (no numpy), so the RTL's twiddle ROM and the numpy model share it.
        """
        angle = 2 * math.pi * k / n
        return self.quantize_coef(math.cos(angle)), self.quantize_coef(-math.sin(angle))
