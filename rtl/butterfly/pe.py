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
(M1 is computed as ``wi · (−x1.im)`` while ``width + 1 ≤ 18``, so both sums are additions.)

Pipeline (:attr:`ButterflyConfig.PE_LATENCY` = 7 registers): operands (the multiplexed
multiplier inputs, in the fabric, so no memory read port drives a DSP) → the multiplier's
operand and product registers (:func:`attnforge.rtl.dsp.multiply`: inside an ECP5
MULT18X18D) and a fabric register after it → sums of products → sums with ``x0·2**F`` and
the rounding constant ``2**(F+shift-1)`` (both prepared beside the operands) → output
(arithmetic shift and saturation). The pipeline advances as one when ``ce`` is high and its
output register is empty or being read (``i.ready = ce & (~o.valid | o.ready)``); bubbles
from input gaps travel through it. ``ce`` (default 1) is the enclosing pipeline's enable:
it also reaches the DSP cells' clock enables, which an ``EnableInserter`` would not.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ...configs.butterfly import ButterflyConfig
from ..dsp import DSP_WIDTH, multiply, multiply_latency

__all__ = ["Mode", "complex_layout", "pe_input_layout", "pe_output_layout", "ButterflyPE"]


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


class ButterflyPE(wiring.Component):
    """A pipelined radix-2 butterfly PE, FFT or real 2×2 chosen per beat.

    Parameters
    ----------
    config : ButterflyConfig
        ``width``, ``twiddle_bits`` and the shift range are used.

    Attributes
    ----------
    i : In(stream) of :func:`pe_input_layout`
        One butterfly per beat.
    o : Out(stream) of :func:`pe_output_layout`
        Its results, in order, :attr:`latency` cycles after the input handshake when the
        output is never stalled.
    latency : int
        Pipeline registers from input to output (:attr:`ButterflyConfig.PE_LATENCY`).
    multipliers : int
        Real multipliers used (4).
    """

    def __init__(self, config=ButterflyConfig()):
        if not isinstance(config, ButterflyConfig):
            raise TypeError(f"config must be a ButterflyConfig, not {config!r}")
        self.config = config
        self.latency = config.PE_LATENCY
        self.multipliers = config.MULTIPLIERS_PER_PE
        super().__init__({
            "i": In(stream.Signature(pe_input_layout(config))),
            "o": Out(stream.Signature(pe_output_layout(config))),
            "ce": In(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        W, T, F = cfg.width, cfg.twiddle_bits, cfg.coef_frac
        acc = signed(T + W + 2)
        shift_shape = signed(cfg.shift_bits)
        inp = self.i.payload

        # The whole pipeline moves when the output register is free or being read, and the
        # enclosing pipeline (``ce``) moves.
        en = Signal()
        m.d.comb += [en.eq(self.ce & (~self.o.valid | self.o.ready)), self.i.ready.eq(en)]

        def delay(value, stages, name):
            """``value`` through ``stages`` registers that load with ``en``."""
            for k in range(stages):
                reg = Signal.like(value, name=f"{name}_d{k}")
                with m.If(en):
                    m.d.sync += reg.eq(value)
                value = reg
            return value

        # Stage A: the multiplexed multiplier operands, in the fabric (off the twiddle and
        # weight memories' read ports, so no memory clock-to-out reaches a DSP). FFT: the
        # second product takes −x1.im (while ``width + 1 ≤ 18``), so both sums are sums of
        # products.
        fft_in = inp.mode == Mode.FFT
        c, x0, x1 = inp.coef, inp.x0, inp.x1
        rc = Signal(acc)                        # rounding constant 2**(F+shift-1)
        with m.Switch(inp.shift):
            for s in range(cfg.SHIFT_MIN, cfg.SHIFT_MAX + 1):
                with m.Case(s):
                    m.d.comb += rc.eq(1 << (F + s - 1))
        a_c = [Signal(signed(T), name=f"a_coef{k}") for k in range(4)]
        negate = W + 1 <= DSP_WIDTH             # −x1.im fits a multiplier operand
        a_x = [Signal(signed(W + negate), name=f"a_data{k}") for k in range(4)]
        a_valid = Signal()
        a_fft = Signal()
        a_shift = Signal(shift_shape)
        a_last = Signal()
        a_k = [Signal(acc, name=f"a_k{n}") for n in ("re", "im", "rc")]
        with m.If(en):
            m.d.sync += [
                a_valid.eq(self.i.valid),
                a_fft.eq(fft_in),
                a_shift.eq(inp.shift),
                a_last.eq(inp.last),
                # the constant parts of the sums: x0·2**F (FFT) and the rounding constant
                a_k[0].eq(Mux(fft_in, x0.re << F, 0) + rc),
                a_k[1].eq((x0.im << F) + rc),
                a_k[2].eq(rc),
                a_c[0].eq(c[0]),
                a_x[0].eq(Mux(fft_in, x1.re, x0.re)),
                a_c[1].eq(c[1]),
                a_x[1].eq(Mux(fft_in, -x1.im if negate else x1.im, x1.re)),
                a_c[2].eq(Mux(fft_in, c[0], c[2])),
                a_x[2].eq(Mux(fft_in, x1.im, x0.re)),
                a_c[3].eq(Mux(fft_in, c[1], c[3])),
                a_x[3].eq(x1.re),
            ]

        # Stages B, C, D: the four products (:func:`~attnforge.rtl.dsp.multiply`: the
        # operand and product registers of an ECP5 MULT18X18D, then a fabric register).
        p = [multiply(m, f"mul{k}", a_c[k], a_x[k], en=en, platform=platform)
             for k in range(4)]
        mul = multiply_latency(a_c[0].shape(), a_x[0].shape())
        assert 1 + mul + 3 == cfg.PE_LATENCY
        d_valid = delay(a_valid, mul, "valid")
        d_fft = delay(a_fft, mul, "fft")
        d_shift = delay(a_shift, mul, "shift")
        d_last = delay(a_last, mul, "last")
        d_k = [delay(k, mul, k.name) for k in a_k]

        # Stage E: the sums of products; FFT: Re(W·x1) = M0 + M1, Im(W·x1) = M2 + M3;
        # REAL: a·x0 + b·x1 = M0 + M1, c·x0 + d·x1 = M2 + M3.
        e_s = [Signal(acc, name=f"e_s{n}") for n in range(2)]
        e_valid = Signal()
        e_fft = Signal()
        e_shift = Signal(shift_shape)
        e_last = Signal()
        e_k = [Signal(acc, name=f"e_k{n}") for n in ("re", "im", "rc")]
        with m.If(en):
            m.d.sync += [
                e_s[0].eq(p[0] + p[1] if negate else Mux(d_fft, p[0] - p[1], p[0] + p[1])),
                e_s[1].eq(p[2] + p[3]),
                e_valid.eq(d_valid), e_fft.eq(d_fft), e_shift.eq(d_shift), e_last.eq(d_last),
                *(e_k[n].eq(d_k[n]) for n in range(3)),
            ]

        # Stage F: the exact sums plus the rounding constant. FFT: x0·2**F ± W·x1 + rc;
        # REAL: y0 = s0 + rc, y1 = s1 + rc (a_k[0] is rc alone in REAL mode).
        f_valid = Signal()
        f_fft = Signal()
        f_shift = Signal(shift_shape)
        f_last = Signal()
        f_y = [Signal(acc, name=f"f_{n}") for n in ("y0re", "y0im", "y1re", "y1im")]
        s0, s1 = e_s
        with m.If(en):
            m.d.sync += [
                f_valid.eq(e_valid), f_fft.eq(e_fft), f_shift.eq(e_shift), f_last.eq(e_last),
                f_y[0].eq(e_k[0] + s0),
                f_y[1].eq(e_k[1] + s1),
                f_y[2].eq(Mux(e_fft, e_k[0] - s0, e_k[2] + s1)),
                f_y[3].eq(e_k[1] - s1),
            ]

        # Stage G: arithmetic shift by F + shift, saturate, output register (REAL: the
        # imaginary outputs are 0).
        amount = (f_shift - cfg.SHIFT_MIN)[:cfg.shift_bits]      # 0 … SHIFT_MAX - SHIFT_MIN
        hi, lo = cfg.data_max, cfg.data_min
        outs = []
        for n, v in zip(("y0re", "y0im", "y1re", "y1im"), f_y):
            shifted = Signal(acc, name=f"g_{n}")
            m.d.comb += shifted.eq(v >> (F + cfg.SHIFT_MIN) >> amount)
            outs.append(Mux(shifted > hi, hi, Mux(shifted < lo, lo, shifted)))
        out = self.o.payload
        with m.If(en):
            m.d.sync += [
                self.o.valid.eq(f_valid),
                out.last.eq(f_last),
                out.y0.re.eq(outs[0]), out.y0.im.eq(Mux(f_fft, outs[1], 0)),
                out.y1.re.eq(outs[2]), out.y1.im.eq(Mux(f_fft, outs[3], 0)),
            ]
        return m
