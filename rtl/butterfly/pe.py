"""The radix-2 butterfly processing element: one butterfly per cycle, FFT or real 2×2.

Arithmetic (bit-exact with :mod:`attnforge.sim.butterfly`, formats in
:mod:`attnforge.configs.butterfly`): ``width``-bit signed data, Q2.F coefficients
(``F = twiddle_bits - 2``), and per beat

* ``Mode.FFT``: ``y0 = x0 + W·x1``, ``y1 = x0 − W·x1`` with ``W = coef[0] + j·coef[1]``,
* ``Mode.REAL``: ``y0 = a·x0 + b·x1``, ``y1 = c·x0 + d·x1`` on the real parts with
  ``(a, b, c, d) = coef``; the imaginary inputs are ignored and the imaginary outputs are 0,

each exact sum divided by ``2**(F + shift)`` with round half up and saturated to ``width``
bits.

Four real multipliers serve both modes (one ECP5 MULT18X18D each, as ``width`` and
``twiddle_bits`` are ≤ 18); only their operands are multiplexed:

==========  ===================  ===================
multiplier  FFT                  REAL
==========  ===================  ===================
M0          ``wr · x1.re``       ``a · x0.re``
M1          ``wi · x1.im``       ``b · x1.re``
M2          ``wr · x1.im``       ``c · x0.re``
M3          ``wi · x1.re``       ``d · x1.re``
==========  ===================  ===================

FFT: ``Re(W·x1) = M0 − M1``, ``Im(W·x1) = M2 + M3``; REAL: ``y0 = M0 + M1``, ``y1 = M2 + M3``.

FFT-only PEs (``linear = 0``) need fewer, and :meth:`ButterflyPE.plan` picks the cheapest
product for the twiddles a PE will see (its column's ROM):

* ``"identity"`` (only ``W = 1``) and ``"rotation"`` (``W ∈ {1, −j}``): no multiplier,
  ``W·x1`` is ``x1`` or ``x1.im − j·x1.re`` times ``2**F``, selected by ``coef[1] ≠ 0``;
* ``"three"`` (any other twiddles): three multipliers, ``k1 = wr·(x1.re + x1.im)``,
  ``k2 = x1.re·(wi − wr)``, ``k3 = x1.im·(wr + wi)``, ``Re(W·x1) = k1 − k3``,
  ``Im(W·x1) = k1 + k2``, with ``coef = (wr, wi, wi − wr, wr + wi)`` (:func:`fft_coefs`,
  precomputed in the ROM).

Every plan computes the same exact integer ``W·x1``, so all are bit-exact with the model;
``"four"`` is the two-mode PE above.

Pipeline (:attr:`ButterflyConfig.PE_LATENCY` = 4 registers): operands (the multiplexed
multiplier inputs) → products → rounded sums (``x0·2**F ± product sum + 2**(F+shift-1)``) →
output (arithmetic shift and saturation). Each multiplier thus sits between two registers.
The pipeline advances as one when its output register is empty or being read
(``i.ready = ~o.valid | o.ready``); bubbles from input gaps travel through it.
"""

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ...configs.butterfly import ButterflyConfig

__all__ = ["Mode", "complex_layout", "pe_input_layout", "pe_output_layout", "fft_coefs",
           "ButterflyPE"]


class Mode(enum.Enum, shape=1):
    """The butterfly a beat asks for."""
    FFT = ButterflyConfig.MODE_FFT
    REAL = ButterflyConfig.MODE_REAL


def complex_layout(width):
    """A complex sample: ``re`` and ``im``, each ``width``-bit signed."""
    return data.StructLayout({"re": signed(width), "im": signed(width)})


def pe_input_layout(cfg):
    """One butterfly's operands.

    ``x0``, ``x1``: complex samples. ``coef``: four Q2.F coefficients (FFT: ``coef[0]``,
    ``coef[1]`` are ``Re W``, ``Im W``, the others unused; REAL: ``a, b, c, d``). ``mode``:
    :class:`Mode`. ``shift``: signed extra right shift (``SHIFT_MIN`` … ``SHIFT_MAX``).
    ``last``: passed through to the output.
    """
    return data.StructLayout({
        "x0": complex_layout(cfg.width),
        "x1": complex_layout(cfg.width),
        "coef": data.ArrayLayout(signed(cfg.twiddle_bits), 4),
        "mode": Mode,
        "shift": signed(cfg.shift_bits),
        "last": 1,
    })


def pe_output_layout(cfg):
    """One butterfly's results ``y0``, ``y1`` (complex) and the input beat's ``last``."""
    return data.StructLayout({
        "y0": complex_layout(cfg.width),
        "y1": complex_layout(cfg.width),
        "last": 1,
    })


def fft_coefs(wr, wi):
    """An FFT-only PE's ``coef`` for the twiddle ``W = wr + j·wi`` (Q2.F integers):
    ``(wr, wi, wi − wr, wr + wi)``, the last two for the three-multiplier product."""
    return (wr, wi, wi - wr, wr + wi)


class ButterflyPE(wiring.Component):
    """A pipelined radix-2 butterfly PE, FFT or real 2×2 chosen per beat.

    Parameters
    ----------
    config : ButterflyConfig
        ``width``, ``twiddle_bits``, the shift range and ``linear`` are used. With
        ``linear = 0`` the PE runs FFT butterflies only (``mode`` is ignored) and ``coef`` is
        :func:`fft_coefs` of the twiddle.
    twiddles : iterable of (int, int), optional
        FFT-only PEs: every twiddle ``(wr, wi)`` the PE will be given (default: any), from
        which :meth:`plan` chooses the product.

    Attributes
    ----------
    i : In(stream) of :func:`pe_input_layout`
        One butterfly per beat.
    o : Out(stream) of :func:`pe_output_layout`
        Its results, in order, :attr:`latency` cycles after the input handshake when the
        output is never stalled.
    latency : int
        Pipeline registers from input to output (:attr:`ButterflyConfig.PE_LATENCY`).
    product : str
        The plan (:meth:`plan`): ``"four"``, ``"three"``, ``"rotation"`` or ``"identity"``.
    multipliers : int
        Real multipliers used (4, 3 or 0).
    """

    #: real multipliers of each plan
    MULTIPLIERS = {"four": 4, "three": 3, "rotation": 0, "identity": 0}

    def __init__(self, config=ButterflyConfig(), *, twiddles=None):
        if not isinstance(config, ButterflyConfig):
            raise TypeError(f"config must be a ButterflyConfig, not {config!r}")
        self.config = config
        self.latency = config.PE_LATENCY
        self.product = self.plan(config, twiddles)
        self.multipliers = self.MULTIPLIERS[self.product]
        super().__init__({
            "i": In(stream.Signature(pe_input_layout(config))),
            "o": Out(stream.Signature(pe_output_layout(config))),
        })

    @classmethod
    def plan(cls, config, twiddles=None):
        """The product a PE of ``config`` uses for ``twiddles`` (module docstring)."""
        if config.linear:
            return "four"
        if twiddles is None:
            return "three"
        one, minus_j = (1 << config.coef_frac, 0), (0, -(1 << config.coef_frac))
        twiddles = {tuple(int(v) for v in w) for w in twiddles}
        if twiddles <= {one}:
            return "identity"
        if twiddles <= {one, minus_j}:
            return "rotation"
        return "three"

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        W, T, F = cfg.width, cfg.twiddle_bits, cfg.coef_frac
        acc = signed(T + W + 2)
        shift_shape = signed(cfg.shift_bits)
        inp = self.i.payload

        # The whole pipeline moves when the output register is free or being read.
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]

        # Stages 1 and 2: operands (DSP input registers), then products (DSP output
        # registers); the plan's exact sums s0, s1 (FFT: Re, Im of W·x1) come out of stage 2.
        fft_in = (inp.mode == Mode.FFT) if cfg.linear else Const(1, 1)
        a_valid = Signal()
        a_fft = Signal()
        a_shift = Signal(shift_shape)
        a_last = Signal()
        a_x0 = Signal(complex_layout(W))
        with m.If(en):
            m.d.sync += [a_valid.eq(self.i.valid), a_fft.eq(fft_in), a_shift.eq(inp.shift),
                         a_last.eq(inp.last), a_x0.eq(inp.x0)]
        b_valid = Signal()
        b_fft = Signal()
        b_shift = Signal(shift_shape)
        b_last = Signal()
        b_x0 = Signal(complex_layout(W))
        with m.If(en):
            m.d.sync += [b_valid.eq(a_valid), b_fft.eq(a_fft), b_shift.eq(a_shift),
                         b_last.eq(a_last), b_x0.eq(a_x0)]
        if not cfg.linear:
            b_fft = Const(1, 1)                     # FFT-only: no mode multiplexers
        s0 = Signal(acc)
        s1 = Signal(acc)
        products = {"four": self._four, "three": self._three,
                    "rotation": self._rotation, "identity": self._rotation}[self.product]
        products(m, en, fft_in, b_fft, s0, s1)

        # Stage 3: the exact sums plus the rounding constant 2**(F+shift-1).
        rc = Signal(acc)
        with m.Switch(b_shift):
            for s in range(cfg.SHIFT_MIN, cfg.SHIFT_MAX + 1):
                with m.Case(s):
                    m.d.comb += rc.eq(1 << (F + s - 1))
        base_re = Signal(acc)
        base_im = Signal(acc)
        m.d.comb += [base_re.eq(b_x0.re << F), base_im.eq(b_x0.im << F)]
        c_valid = Signal()
        c_shift = Signal(shift_shape)
        c_last = Signal()
        c_y = [Signal(acc, name=f"c_{n}") for n in ("y0re", "y0im", "y1re", "y1im")]
        with m.If(en):
            m.d.sync += [
                c_valid.eq(b_valid), c_shift.eq(b_shift), c_last.eq(b_last),
                c_y[0].eq(Mux(b_fft, base_re + s0, s0) + rc),
                c_y[1].eq(Mux(b_fft, base_im + s1 + rc, 0)),
                c_y[2].eq(Mux(b_fft, base_re - s0, s1) + rc),
                c_y[3].eq(Mux(b_fft, base_im - s1 + rc, 0)),
            ]

        # Stage 4: arithmetic shift by F + shift, saturate, output register.
        amount = (c_shift - cfg.SHIFT_MIN)[:cfg.shift_bits]      # 0 … SHIFT_MAX - SHIFT_MIN
        hi, lo = cfg.data_max, cfg.data_min
        outs = []
        for n, v in zip(("y0re", "y0im", "y1re", "y1im"), c_y):
            shifted = Signal(acc, name=f"d_{n}")
            m.d.comb += shifted.eq(v >> (F + cfg.SHIFT_MIN) >> amount)
            outs.append(Mux(shifted > hi, hi, Mux(shifted < lo, lo, shifted)))
        out = self.o.payload
        with m.If(en):
            m.d.sync += [
                self.o.valid.eq(c_valid),
                out.last.eq(c_last),
                out.y0.re.eq(outs[0]), out.y0.im.eq(outs[1]),
                out.y1.re.eq(outs[2]), out.y1.im.eq(outs[3]),
            ]
        return m

    def _four(self, m, en, fft_in, b_fft, s0, s1):
        """Four multipliers with multiplexed operands, both modes (module docstring)."""
        cfg = self.config
        W, T = cfg.width, cfg.twiddle_bits
        c, x0, x1 = self.i.payload.coef, self.i.payload.x0, self.i.payload.x1
        a_c = [Signal(signed(T), name=f"a_coef{k}") for k in range(4)]
        a_x = [Signal(signed(W), name=f"a_data{k}") for k in range(4)]
        with m.If(en):
            m.d.sync += [
                a_c[0].eq(c[0]),
                a_x[0].eq(Mux(fft_in, x1.re, x0.re)),
                a_c[1].eq(c[1]),
                a_x[1].eq(Mux(fft_in, x1.im, x1.re)),
                a_c[2].eq(Mux(fft_in, c[0], c[2])),
                a_x[2].eq(Mux(fft_in, x1.im, x0.re)),
                a_c[3].eq(Mux(fft_in, c[1], c[3])),
                a_x[3].eq(x1.re),
            ]
        b_p = [Signal(signed(T + W), name=f"b_p{k}") for k in range(4)]
        with m.If(en):
            m.d.sync += [b_p[k].eq(a_c[k] * a_x[k]) for k in range(4)]
        m.d.comb += [
            s0.eq(Mux(b_fft, b_p[0] - b_p[1], b_p[0] + b_p[1])),
            s1.eq(b_p[2] + b_p[3]),
        ]

    def _three(self, m, en, fft_in, b_fft, s0, s1):
        """Three multipliers, FFT only: ``k1 − k3``, ``k1 + k2`` (module docstring)."""
        cfg = self.config
        W, T = cfg.width, cfg.twiddle_bits
        c, x1 = self.i.payload.coef, self.i.payload.x1
        a_c = [Signal(signed(T), name=f"a_coef{k}") for k in (0, 2, 3)]
        a_x = [Signal(signed(W + 1), name=f"a_data{k}") for k in range(3)]
        with m.If(en):
            m.d.sync += [
                a_c[0].eq(c[0]), a_x[0].eq(x1.re + x1.im),
                a_c[1].eq(c[2]), a_x[1].eq(x1.re),
                a_c[2].eq(c[3]), a_x[2].eq(x1.im),
            ]
        k = [Signal(signed(T + W + 1), name=f"b_k{n + 1}") for n in range(3)]
        with m.If(en):
            m.d.sync += [k[n].eq(a_c[n] * a_x[n]) for n in range(3)]
        m.d.comb += [s0.eq(k[0] - k[2]), s1.eq(k[0] + k[1])]

    def _rotation(self, m, en, fft_in, b_fft, s0, s1):
        """No multiplier: ``W = 1`` or ``−j`` (``coef[1] ≠ 0``), the product a shift."""
        W, F = self.config.width, self.config.coef_frac
        x1 = self.i.payload.x1
        a_re, a_im = Signal(signed(W), name="a_re"), Signal(signed(W), name="a_im")
        b_re, b_im = Signal(signed(W + 1), name="b_re"), Signal(signed(W + 1), name="b_im")
        turn = (self.i.payload.coef[1] != 0) if self.product == "rotation" else Const(0, 1)
        with m.If(en):
            m.d.sync += [a_re.eq(x1.re), a_im.eq(x1.im)]
        a_turn = Signal()
        with m.If(en):
            m.d.sync += [a_turn.eq(turn),
                         b_re.eq(Mux(a_turn, a_im, a_re)), b_im.eq(Mux(a_turn, -a_re, a_im))]
        m.d.comb += [s0.eq(b_re << F), s1.eq(b_im << F)]
