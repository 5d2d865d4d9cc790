"""rtl/dsp.py: the pipelined multiplier, behavioural (Amaranth's simulator) and as ECP5 cells."""

import random

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from attnforge.rtl.dsp import multiply, multiply_latency

SHAPES = [(signed(12), signed(12)), (unsigned(17), unsigned(17)), (unsigned(17), signed(17)),
          (unsigned(29), unsigned(16)), (unsigned(40), signed(18))]


def _extremes(shape):
    lo, hi = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed else \
        (0, (1 << shape.width) - 1)
    return lo, hi


@pytest.mark.parametrize("a_shape, b_shape", SHAPES, ids=lambda s: repr(s))
@pytest.mark.parametrize("with_en", [False, True])
def test_products_and_latency(a_shape, b_shape, with_en):
    m = Module()
    a, b, en = Signal(a_shape), Signal(b_shape), Signal(init=1)
    p = multiply(m, "mul", a, b, en=en if with_en else None)
    latency = multiply_latency(a_shape, b_shape)
    assert latency == (4 if max(a_shape.width, b_shape.width) > 18 else 3)
    rng = random.Random(a_shape.width * 100 + b_shape.width)
    lo_a, hi_a = _extremes(a_shape)
    lo_b, hi_b = _extremes(b_shape)
    inputs = [(x, y) for x in (lo_a, hi_a, 0) for y in (lo_b, hi_b, 0)]
    inputs += [(rng.randint(lo_a, hi_a), rng.randint(lo_b, hi_b)) for _ in range(60)]

    async def bench(ctx):
        history = []                      # (a, b) presented at each enabled edge
        for x, y in inputs + [(0, 0)] * latency:
            ctx.set(a, x)
            ctx.set(b, y)
            enabled = not with_en or rng.random() < 0.7
            ctx.set(en, enabled)
            await ctx.tick()
            if enabled:
                history.append((x, y))
                if len(history) >= latency:     # after edge k: the inputs of edge k − latency + 1
                    px, py = history[-latency]
                    assert ctx.get(p) == px * py, (px, py)
        assert len(history) > latency + 20

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


class _ECP5:
    """Just enough of an ECP5 platform for multiply() to pick the DSP cells."""
    family = "ecp5"


def test_ecp5_cells_have_their_registers():
    m = Module()
    a, b = Signal(unsigned(29)), Signal(unsigned(16))
    c, d = Signal(signed(12)), Signal(signed(12))
    p, q = Signal(45), Signal(24)
    m.d.comb += [p.eq(multiply(m, "wide", a, b, platform=_ECP5())),
                 q.eq(multiply(m, "lane", c, d, platform=_ECP5()))]
    text = rtlil.convert(m, ports=[a, b, c, d, p, q])
    assert text.count("cell \\MULT18X18D") == 3
    for reg in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK"):
        assert text.count(f'parameter \\{reg} "CLK0"') == 3
    # ecppack knows only SOURCEB_MODE's default (B_SHIFT): setting "B_INPUT" breaks packing
    assert "SOURCEB_MODE" not in text
    with pytest.raises(ValueError, match="one operand of at most 18 bits"):
        multiply(m, "bad", Signal(20), Signal(20))
    with pytest.raises(ValueError, match="splits only an unsigned wide operand"):
        multiply(m, "bad", Signal(signed(20)), Signal(8))
