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
product for the twiddles a PE will see (its column's ROM, in address order):

* ``"three"`` (the default): three multipliers, ``k1 = wr·(x1.re + x1.im)``,
  ``k2 = x1.re·(wi − wr)``, ``k3 = x1.im·(wr + wi)``, ``Re(W·x1) = k1 − k3``,
  ``Im(W·x1) = k1 + k2``, with ``coef = (wr, wi, wi − wr, wr + wi)`` (:func:`fft_coefs`,
  precomputed in the ROM).
* Table-driven plans, no multiplier: ``coef[0]`` is the twiddle's index in the table (the
  column's ROM word is its address), and the products are built at elaboration from the
  table: ``"identity"`` (only ``W = 1``), ``"rotation"`` (``W ∈ {1, −j}``) and
  ``"constants"`` (every ``wi ≤ 0`` and at most :attr:`ButterflyPE.CONSTANTS_MAX` distinct
  component magnitudes besides 0 and ``2**F``: the columns with ``W_8`` and ``W_16``
  twiddles).

  Each twiddle is written ``W = (−j)**rot · (u − j·v)`` with ``u, v ≥ 0`` (possible as
  ``wi ≤ 0``), so ``W·x1 = (u − j·v)·(p + j·q)``: ``Re = u·p + v·q``, ``Im = u·q − v·p``
  with ``(p, q) = (x1.re, x1.im)``, or ``−j·x1 = (x1.im, −x1.re)`` when ``rot``. A product
  by a magnitude is a sum of shifted copies of ``p`` or ``q``, one per nonzero digit of its
  canonical signed digit form (:func:`csd_digits`), each added or subtracted (a group whose
  digits are all negative is registered positive and subtracted later: no negation).
  Between registers:

  1. ``p``, ``q`` from ``x1`` (a 2:1 multiplexer on ``rot``; ``−x1.re`` is taken as
     ``~x1.re = −x1.re − 1``, and the missing ``v``, ``u`` are added in stage 2b), then each
     product's digits, in groups of up to four consecutive ones, summed (≤ 2 adder levels);
  2. each product's groups summed (≤ 2 adder levels for up to 16 digits, 1 up to 8: every
     magnitude of the W8, W16 tables up to 18 bits), and the four products ``u·p``, ``v·q``, ``u·q``, ``v·p`` of the beat's
     twiddle chosen by its index (a multiplexer of at most five inputs);
  2a, 2b. ``s0 = u·p + v·q`` and ``s1 = u·q − v·p``, registered twice: where the DSP
     plans register their products a third time, then, plus the ``rot`` correction (a
     constant chosen by the index), in the shared product-sum register;
  3. as in every plan, the rounded base ``x0·2**F + 2**(F+shift-1)`` ± ``s0`` and ± ``s1``.

  ``"rotation"`` and ``"identity"`` are the degenerate cases: ``u, v ∈ {0, 2**F}``, so no
  adder before stage 2b (and for ``"identity"`` no multiplexer either).

Every plan computes the same exact integer ``W·x1``, so all are bit-exact with the model;
``"four"`` is the two-mode PE above.

Pipeline (:attr:`ButterflyConfig.PE_LATENCY` = 6 registers): operands (the multiplexed
multiplier inputs, or the partial sums) → products → products again → the plan's product
sums ``s0``, ``s1`` beside the rounded bases ``x0·2**F + 2**(F+shift-1)`` (``x0`` is 0 in a
REAL beat) → rounded sums (base ± product sum, one adder each; a REAL beat's ``y1`` is the
base + ``s1`` of the ``y0.im`` adder) → output (arithmetic shift and saturation; a REAL
beat's imaginary outputs 0). The first two are the MULT18X18D's own input and output
registers on an ECP5 (:func:`~attnforge.rtl.dsp.multiply`: Yosys packs no fabric
flip-flop into a DSP, so without it a 16-PE array puts thousands of them around the DSP
rows); the third, beside the DSP, gives the route out of it a cycle of its own. Each multiplier thus sits between two registers, and each carry chain too.
The pipeline advances as one when its output register is empty or being read
(``i.ready = ~o.valid | o.ready``); bubbles from input gaps travel through it.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, signed
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ...configs.butterfly import ButterflyConfig
from ..dsp import DSP_WIDTH, multiply
from ..pipeline import held_copies, stage

__all__ = ["Mode", "complex_layout", "pe_input_layout", "pe_output_layout", "fft_coefs",
           "csd_digits", "ButterflyPE"]


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


def csd_digits(value):
    """The canonical signed digit form of the integer ``value``, least significant first:
    digits in ``{−1, 0, 1}``, ``Σ d·2**k == value``, no two adjacent ones nonzero (so the
    fewest nonzero digits of any signed-digit form)."""
    digits = []
    while value:
        digit = 2 - (value & 3) if value & 1 else 0     # …01 → 1, …11 → −1
        digits.append(digit)
        value = (value - digit) >> 1
    return digits


def _turn(wr, wi):
    """``(rot, u, v)`` with ``wr + j·wi = (−j)**rot · (u − j·v)`` and ``u, v ≥ 0``, for
    ``wi ≤ 0``: ``rot`` from ``−j`` (included) round to ``−1``."""
    if wr < 0 or (wr == 0 and wi < 0):
        return 1, -wi, -wr
    return 0, wr, -wi


def _signed_sum(terms):
    """``Σ sign·value`` of ``(value, sign)`` pairs as a balanced tree of adders and
    subtractors, never a negation: ``(expression, sign)``, ``sign`` −1 only if every one is."""
    while len(terms) > 1:
        level = []
        for (a, sa), (b, sb) in zip(terms[::2], terms[1::2]):
            if sa < 0 < sb:
                (a, sa), (b, sb) = (b, sb), (a, sa)
            level.append((a + b if sa == sb else a - b, sa))
        terms = level + terms[len(level) * 2:]
    return terms[0]


def _product(m, name, a, b, en, platform):
    """``a·b`` three registers later: :func:`multiply` (in a MULT18X18D on an ECP5) when both
    operands fit one; otherwise (a ``"three"`` PE's ``x1.re + x1.im`` at ``width = 18``) the
    same three registers around a fabric product, which synthesis splits over DSPs."""
    if max(len(Value.cast(a)), len(Value.cast(b))) <= DSP_WIDTH:
        return multiply(m, name, a, b, en=en, platform=platform)
    ops = stage(m, f"{name}_in", en, a=a, b=b)
    product = stage(m, f"{name}_p", en, p=ops.a * ops.b).p
    return stage(m, f"{name}_out", en, p=product).p


class ButterflyPE(wiring.Component):
    """A pipelined radix-2 butterfly PE, FFT or real 2×2 chosen per beat.

    Parameters
    ----------
    config : ButterflyConfig
        ``width``, ``twiddle_bits``, the shift range and ``linear`` are used. With
        ``linear = 0`` the PE runs FFT butterflies only (``mode`` is ignored) and ``coef`` is
        :func:`fft_coefs` of the twiddle, or for the table-driven plans (:attr:`INDEXED`)
        ``coef[0]`` is its index in ``twiddles``.
    twiddles : iterable of (int, int), optional
        FFT-only PEs: the twiddle table ``(wr, wi)``, in index order, of every twiddle the PE
        will be given (default: any), from which :meth:`plan` chooses the product.

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
        The plan (:meth:`plan`): ``"four"``, ``"three"``, ``"constants"``, ``"rotation"``
        or ``"identity"``.
    multipliers : int
        Real multipliers used (4, 3 or 0).
    """

    #: real multipliers of each plan
    MULTIPLIERS = {"four": 4, "three": 3, "constants": 0, "rotation": 0, "identity": 0}
    #: the table-driven plans: ``coef[0]`` is the twiddle's index in the PE's table
    INDEXED = ("constants", "rotation", "identity")
    #: ``"constants"``: most distinct twiddle component magnitudes besides 0 and ``2**F``
    CONSTANTS_MAX = 3

    def __init__(self, config=ButterflyConfig(), *, twiddles=None):
        if not isinstance(config, ButterflyConfig):
            raise TypeError(f"config must be a ButterflyConfig, not {config!r}")
        self.config = config
        self.latency = config.PE_LATENCY
        self._table = None if twiddles is None else [tuple(int(v) for v in w) for w in twiddles]
        self.product = self.plan(config, self._table)
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
        magnitudes = {abs(v) for w in twiddles for v in w} - {0, 1 << config.coef_frac}
        if all(wi <= 0 for _, wi in twiddles) and len(magnitudes) <= cls.CONSTANTS_MAX:
            return "constants"
        return "three"

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        W, T, F = cfg.width, cfg.twiddle_bits, cfg.coef_frac
        acc = signed(T + W + 2)
        inp = self.i.payload

        # The whole pipeline moves when the output register is free or being read.
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]

        # Stages 1, 2 and 2a: the plan's products. A DSP plan's operands and products are
        # registered inside the MULT18X18D and once more beside it (rtl/dsp.multiply: three
        # registers, none of them in the fabric around the DSP row); a table-driven plan
        # builds its products in two and registers their sums in the third.
        fft_in = (inp.mode == Mode.FFT) if cfg.linear else Const(1, 1)
        beat = stage(m, "a", en, valid=self.i.valid, fft=fft_in, shift=inp.shift, last=inp.last,
                     x0_re=Mux(fft_in, inp.x0.re, 0), x0_im=Mux(fft_in, inp.x0.im, 0))
        for name in ("b", "b1"):
            beat = stage(m, name, en, **vars(beat))
        b_fft = beat.fft if cfg.linear else Const(1, 1)     # FFT-only: no mode multiplexers
        s0 = Signal(acc)
        s1 = Signal(acc)
        if self.product in self.INDEXED:
            offsets = self._table_driven(m, en, s0, s1)
            sums = stage(m, "b1", en, s0=s0, s1=s1, sel=offsets[0] if offsets is not None else 0)
            s0, s1 = sums.s0, sums.s1
            if offsets is not None:
                offsets = (sums.sel, offsets[1])
        else:
            offsets = None
            {"four": self._four, "three": self._three}[self.product](m, en, fft_in, b_fft, s0, s1,
                                                                     platform)

        # Stage 2b: the exact product sums (the table-driven plans' ``rot`` offsets added
        # here), and per component the rounded base ``x0·2**F + 2**(F+shift-1)`` (``x0`` is 0
        # in a REAL beat), registered with the beat's flags; so stage 3 is one adder per output
        # and the sums' carry chains (after the products) and stage 3's are never in series.
        half = Signal(acc)
        with m.Switch(beat.shift):
            for s in range(cfg.SHIFT_MIN, cfg.SHIFT_MAX + 1):
                with m.Case(s):
                    m.d.comb += half.eq(1 << (F + s - 1))
        if offsets is not None:
            sel, table = offsets
            o0, o1 = Signal(acc), Signal(acc)
            with m.Switch(sel):
                for value, (v0, v1) in enumerate(table):
                    with m.Case(value):
                        m.d.comb += [o0.eq(v0), o1.eq(v1)]
            exact = Signal(acc), Signal(acc)
            m.d.comb += [exact[0].eq(s0 + o0), exact[1].eq(s1 + o1)]
            s0, s1 = exact
        base = Signal(acc), Signal(acc)
        m.d.comb += [base[0].eq((beat.x0_re << F) + half), base[1].eq((beat.x0_im << F) + half)]
        b2 = stage(m, "b2", en, s0=s0, s1=s1, valid=beat.valid, shift=beat.shift,
                   last=beat.last, fft=b_fft, base_re=base[0], base_im=base[1])
        s0, s1 = b2.s0, b2.s1
        b_fft = b2.fft if cfg.linear else b_fft

        # Stage 3: the rounded sums, one adder each (y0re, y0im, y1re, y1im). A REAL beat's
        # y1 is its base + s1, the sum y0im's register holds (the output zeroes y0im, y1im).
        c_valid = Signal()
        c_last = Signal()
        c_real = Signal()
        c_y = [Signal(acc, name=f"c_{n}") for n in ("y0re", "y0im", "y1re", "y1im")]
        im_sum = Signal(acc)
        m.d.comb += im_sum.eq(b2.base_im + s1)
        # The shift amount F + shift - (F + SHIFT_MIN), one register per output: each steers
        # the selects of its own shifter (the 16-PE builds' worst path at seeds 1 and 2 was
        # one shift register → 7–9 ns of routing to all four shifters).
        # (held_copies: four plain registers of one value would be merged by synthesis.)
        amount_next = (b2.shift - cfg.SHIFT_MIN)[:cfg.shift_bits]
        bits = [held_copies(m, f"c_amount{k}_", 4, load=en, value=amount_next[k])
                for k in range(cfg.shift_bits)]
        amounts = [Cat(*(bit[n] for bit in bits)) for n in range(4)]
        with m.If(en):
            m.d.sync += [
                c_valid.eq(b2.valid), c_last.eq(b2.last), c_real.eq(~b_fft),
                c_y[0].eq(b2.base_re + s0),
                c_y[1].eq(im_sum),
                c_y[2].eq(Mux(b_fft, b2.base_re - s0, im_sum)),
                c_y[3].eq(b2.base_im - s1),
            ]

        # Stage 4: arithmetic shift by F + shift, saturate, output register. The shifted sum
        # fits ``width`` bits when its bits from ``width - 1`` up are all equal (sign
        # extension); otherwise its sign picks the limit. The same as comparing against
        # data_max and data_min, with two AND/OR reductions instead of two carry chains
        # as long as the sum.
        W = cfg.width
        outs = []
        for n, v, amount in zip(("y0re", "y0im", "y1re", "y1im"), c_y, amounts):
            shifted = Signal(acc, name=f"d_{n}")
            m.d.comb += shifted.eq(v >> (F + cfg.SHIFT_MIN) >> amount)
            top = shifted[W - 1:]
            fits = top.all() | ~top.any()
            negative = shifted[-1]
            limit = Cat((~negative).replicate(W - 1), negative)
            outs.append(Mux(fits, shifted[:W], limit).as_signed())
        out = self.o.payload
        with m.If(en):
            m.d.sync += [
                self.o.valid.eq(c_valid),
                out.last.eq(c_last),
                out.y0.re.eq(outs[0]), out.y0.im.eq(Mux(c_real, 0, outs[1])),
                out.y1.re.eq(outs[2]), out.y1.im.eq(Mux(c_real, 0, outs[3])),
            ]
        return m

    def _four(self, m, en, fft_in, b_fft, s0, s1, platform):
        """Four multipliers with multiplexed operands, both modes (module docstring)."""
        c, x0, x1 = self.i.payload.coef, self.i.payload.x0, self.i.payload.x1
        operands = [(c[0], Mux(fft_in, x1.re, x0.re)),
                    (c[1], Mux(fft_in, x1.im, x1.re)),
                    (Mux(fft_in, c[0], c[2]), Mux(fft_in, x1.im, x0.re)),
                    (Mux(fft_in, c[1], c[3]), x1.re)]
        p = [_product(m, f"m{k}", coef, x, en, platform) for k, (coef, x) in enumerate(operands)]
        m.d.comb += [
            s0.eq(p[0] + (p[1] ^ b_fft.replicate(len(p[1])).as_signed()) + b_fft),
            s1.eq(p[2] + p[3]),
        ]

    def _three(self, m, en, fft_in, b_fft, s0, s1, platform):
        """Three multipliers, FFT only: ``k1 − k3``, ``k1 + k2`` (module docstring)."""
        c, x1 = self.i.payload.coef, self.i.payload.x1
        operands = [(c[0], x1.re + x1.im), (c[2], x1.re), (c[3], x1.im)]
        k = [_product(m, f"m{n}", coef, x, en, platform) for n, (coef, x) in enumerate(operands)]
        m.d.comb += [s0.eq(k[0] - k[2]), s1.eq(k[0] + k[1])]

    def _table_driven(self, m, en, s0, s1):
        """No multiplier: ``W·x1`` from the twiddle's index, by shifts and adds of
        ``p``, ``q`` (module docstring). Returns stage 3's offsets of the ``rot`` twiddles."""
        cfg = self.config
        W = cfg.width
        x1 = self.i.payload.x1
        turns = [_turn(*w) for w in self._table]

        def times(c):
            """The shape of ``c·x`` (``c ≥ 0``) for any ``width``-bit ``x``."""
            return Shape.cast(range(c * cfg.data_min, c * cfg.data_max + 1))

        sel = self.i.payload.coef[0].as_unsigned()[:max((len(turns) - 1).bit_length(), 1)]
        a_sel = Signal(len(sel), name="a_sel")
        b_sel = Signal(len(sel), name="b_sel")
        with m.If(en):
            m.d.sync += [a_sel.eq(sel), b_sel.eq(a_sel)]

        # Stage 1: (p, q) = x1 or −j·x1 (−x1.re as ~x1.re, 1 short), then each product's
        # digits, four consecutive ones at most, summed and registered (once per pattern).
        operands = {"p": x1.re, "q": x1.im}
        if any(rot for rot, _, _ in turns):
            rot = Signal()
            with m.Switch(sel):
                for value, (r, _, _) in enumerate(turns):
                    with m.Case(value):
                        m.d.comb += rot.eq(r)
            operands = {"p": Signal(signed(W), name="p"), "q": Signal(signed(W), name="q")}
            m.d.comb += [operands["p"].eq(Mux(rot, x1.im, x1.re)),
                         operands["q"].eq(Mux(rot, ~x1.re, x1.im))]
        groups = {}

        def group(x, digits):
            """``(register, sign, shift)``: stage 1's sum of ``digits`` ((k, d), k rising) of x."""
            low = digits[0][0]
            key = (x, tuple((k - low, d) for k, d in digits))
            if key not in groups:
                expr, sign = _signed_sum([(operands[x] << (k - low), d) for k, d in digits])
                coef = abs(sum(d << (k - low) for k, d in digits))
                reg = Signal(times(coef), name=f"a_{x}{len(groups)}")
                with m.If(en):
                    m.d.sync += reg.eq(expr)
                groups[key] = reg, sign
            return (*groups[key], low)

        products = {}

        def product(x, magnitude):
            """Stage 2: ``(signal, shift)``, ``magnitude·x`` as the sum of its groups."""
            if (x, magnitude) in products:
                return products[x, magnitude]
            digits = [(k, d) for k, d in enumerate(csd_digits(magnitude)) if d]
            count = -(-len(digits) // 4)
            if count > 4:
                raise ValueError(f"{magnitude} has {len(digits)} nonzero digits, over 16")
            cuts = [len(digits) * n // count for n in range(count + 1)]
            parts = [group(x, digits[a:b]) for a, b in zip(cuts, cuts[1:])]
            low = parts[0][2]
            expr, sign = _signed_sum([(reg << (shift - low), s) for reg, s, shift in parts])
            assert sign > 0
            value = Signal(times(magnitude >> low), name=f"{x}_x{magnitude}")
            m.d.comb += value.eq(expr)
            products[x, magnitude] = value, low
            return value, low

        # Stage 2: the four products of this beat's twiddle, chosen by the index.
        slots = {}
        for name, x, k in (("up", "p", 1), ("vq", "q", 2), ("uq", "q", 1), ("vp", "p", 2)):
            magnitudes = [t[k] for t in turns]
            if not any(magnitudes):
                continue
            made = {mag: product(x, mag) for mag in set(magnitudes) - {0}}
            low = min(shift for _, shift in made.values())
            reg = Signal(times(max(magnitudes) >> low), name=f"b_{name}")
            with m.If(en):
                if len(set(magnitudes)) == 1:
                    expr, shift = made[magnitudes[0]]
                    m.d.sync += reg.eq(expr << (shift - low))
                else:
                    with m.Switch(a_sel):
                        for value, mag in enumerate(magnitudes):
                            with m.Case(value):
                                expr, shift = made[mag] if mag else (0, low)
                                m.d.sync += reg.eq(expr << (shift - low))
            slots[name] = reg << low

        def total(terms):
            terms = [(slots[name], sign) for name, sign in terms if name in slots]
            if not terms:
                return 0
            expr, sign = _signed_sum(terms)
            return expr if sign > 0 else -expr

        # Stage 2a (with the shared code): s0 = u·p + v·q, s1 = u·q − v·p, and the ``rot``
        # twiddles' v, u (q was ~x1.re = −x1.re − 1) as offsets to the rounding constants.
        m.d.comb += [s0.eq(total([("up", 1), ("vq", 1)])), s1.eq(total([("uq", 1), ("vp", -1)]))]
        offsets = [(v, u) if rot else (0, 0) for rot, u, v in turns]
        return (b_sel, offsets) if any(map(any, offsets)) else None
