"""Pipelined multipliers that land in the FPGA's DSP blocks with their registers.

Yosys maps a behavioural ``a * b`` on ECP5 to MULT18X18D cells but packs none of the
surrounding flip-flops into them, so every product pays a long route into the DSP and
another out of it. :func:`multiply` registers operands and product inside the MULT18X18D
(``REG_INPUTA/B`` and ``REG_OUTPUT`` on ``CLK0``/``CE0``) when the platform is an ECP5,
and builds the same two register stages in the fabric otherwise (Amaranth's simulator,
other targets), so both have the same latency and the same results. A third register, in
the fabric with no logic before it, takes the product out of the DSP: the placer can put
it beside the DSP, so the long route from a DSP column to the logic that uses the product
gets a cycle of its own (without it, that route alone took 9.3 ns on the ULX3S).

An unsigned operand wider than 18 bits is split into 18-bit chunks, one multiplier each;
their products are shifted and summed in one more register stage.

Latency (:func:`multiply_latency`): 3 cycles, 4 with a split.
"""

from amaranth.hdl import ClockSignal, Const, Instance, Signal, Value, signed, unsigned

__all__ = ["DSP_WIDTH", "multiply_latency", "multiply"]

#: operand width of one ECP5 multiplier (MULT18X18D)
DSP_WIDTH = 18


def _fits(shape):
    return shape.width <= DSP_WIDTH


def _plan(a, b):
    """``(wide, narrow, chunks)``: the operand to split, the other, and the split's bounds."""
    a, b = Value.cast(a), Value.cast(b)
    if not _fits(b.shape()) and _fits(a.shape()):
        a, b = b, a
    if not _fits(b.shape()):
        raise ValueError(f"multiply() needs one operand of at most {DSP_WIDTH} bits, not "
                         f"{a.shape()} × {b.shape()}")
    if _fits(a.shape()):
        return a, b, [(0, len(a))]
    if a.shape().signed:
        raise ValueError(f"multiply() splits only an unsigned wide operand, not {a.shape()}")
    return a, b, [(lo, min(lo + DSP_WIDTH, len(a))) for lo in range(0, len(a), DSP_WIDTH)]


def multiply_latency(a_shape, b_shape):
    """Register stages of :func:`multiply` for operands of these shapes (3, or 4 if split)."""
    _, _, chunks = _plan(Signal(a_shape), Signal(b_shape))
    return 3 if len(chunks) == 1 else 4


def _is_ecp5(platform):
    return getattr(platform, "family", None) == "ecp5"


def _ecp5_mult(m, name, a, b, en):
    """One MULT18X18D with registered A, B and P; returns the product's value."""
    a18 = Signal(signed(DSP_WIDTH) if a.shape().signed else unsigned(DSP_WIDTH), name=f"{name}_a")
    b18 = Signal(signed(DSP_WIDTH) if b.shape().signed else unsigned(DSP_WIDTH), name=f"{name}_b")
    p = Signal(2 * DSP_WIDTH, name=f"{name}_p")
    m.d.comb += [a18.eq(a), b18.eq(b)]
    ports = {}
    for n in range(DSP_WIDTH):
        ports[f"i_A{n}"] = a18[n]
        ports[f"i_B{n}"] = b18[n]
        ports[f"i_C{n}"] = Const(0, 1)
    for n in range(2 * DSP_WIDTH):
        ports[f"o_P{n}"] = p[n]
    m.submodules[name] = Instance(
        "MULT18X18D",
        p_REG_INPUTA_CLK="CLK0", p_REG_INPUTA_CE="CE0", p_REG_INPUTA_RST="RST0",
        p_REG_INPUTB_CLK="CLK0", p_REG_INPUTB_CE="CE0", p_REG_INPUTB_RST="RST0",
        p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE",
        p_REG_OUTPUT_CLK="CLK0", p_REG_OUTPUT_CE="CE0", p_REG_OUTPUT_RST="RST0",
        # (no SOURCEB_MODE: ecppack knows only its default, B_SHIFT, which with SOURCEB = 0
        # takes the B input all the same; "B_INPUT" makes it fail)
        p_GSR="DISABLED", p_RESETMODE="SYNC", p_MULT_BYPASS="DISABLED", p_CAS_MATCH_REG="FALSE",
        i_CLK0=ClockSignal("sync"), i_CE0=Const(1, 1) if en is None else en, i_RST0=Const(0, 1),
        i_SIGNEDA=Const(int(a.shape().signed), 1), i_SIGNEDB=Const(int(b.shape().signed), 1),
        i_SOURCEA=Const(0, 1), i_SOURCEB=Const(0, 1),
        **ports)
    width = len(a) + len(b)
    return p[:width].as_signed() if a.shape().signed or b.shape().signed else p[:width]


def _fabric_mult(m, name, a, b, en):
    """Operand registers, then a product register, in the fabric."""
    ra = Signal(a.shape(), name=f"{name}_a")
    rb = Signal(b.shape(), name=f"{name}_b")
    p = Signal((a * b).shape(), name=f"{name}_p")
    stmts = [ra.eq(a), rb.eq(b), p.eq(ra * rb)]
    if en is None:
        m.d.sync += stmts
    else:
        with m.If(en):
            m.d.sync += stmts
    return p


def multiply(m, name, a, b, *, en=None, platform=None):
    """``a·b``, exact, :func:`multiply_latency` cycles after ``a`` and ``b`` are presented.

    Parameters
    ----------
    m : Module
    name : str
        Prefix of the registers and DSP cells.
    a, b : Value
        One of at most 18 bits (signed or unsigned); the other too, or unsigned and wider.
    en : Value, optional
        Clock enable of every stage (the pipeline's advance condition).
    platform
        An ECP5 platform (``platform.family == "ecp5"``) gets MULT18X18D cells.

    Returns
    -------
    Value
        The product, shape of ``a * b``.
    """
    wide, narrow, chunks = _plan(a, b)
    make = _ecp5_mult if _is_ecp5(platform) else _fabric_mult
    parts = []
    for k, (lo, hi) in enumerate(chunks):
        product = make(m, f"{name}_{k}", wide[lo:hi] if len(chunks) > 1 else wide, narrow, en)
        out = Signal(product.shape(), name=f"{name}_{k}_out")     # out of the DSP
        if en is None:
            m.d.sync += out.eq(product)
        else:
            with m.If(en):
                m.d.sync += out.eq(product)
        parts.append(out)
    if len(parts) == 1:
        return parts[0]
    total = Signal((wide * narrow).shape(), name=f"{name}_sum")
    expr = sum(part << lo for part, (lo, _) in zip(parts, chunks))
    if en is None:
        m.d.sync += total.eq(expr)
    else:
        with m.If(en):
            m.d.sync += total.eq(expr)
    return total
