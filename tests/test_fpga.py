"""FPGA flow: board harness, nextpnr report parsing, and a real iCEBreaker build."""
import json
from pathlib import Path

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import Flow, In, Out
from amaranth.sim import Simulator

from attnforge.fpga.board import BoardTop, flatten_ports
from attnforge.fpga.build import BOARDS, FpgaReport, build, critical_path, parse_report


class Mac8(wiring.Component):
    """8-bit signed multiply-accumulate: a registered product, a 24-bit accumulator.

    Input stream ``i`` carries ``a``, ``b`` and ``clear``; every accepted
    input produces one accumulator value on ``o`` (one-deep skid-less pipe).
    """

    def __init__(self):
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "a": signed(8), "b": signed(8), "clear": 1}))),
            "o": Out(stream.Signature(signed(24))),
        })

    def elaborate(self, platform):
        m = Module()
        prod = Signal(signed(16))
        clear = Signal()
        acc = Signal(signed(24))
        p_valid = Signal()

        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        fire = self.i.valid & self.i.ready
        m.d.sync += p_valid.eq(fire)
        with m.If(fire):
            m.d.sync += [prod.eq(self.i.payload.a * self.i.payload.b),
                         clear.eq(self.i.payload.clear)]
        with m.If(p_valid):
            nxt = Signal(signed(24))
            m.d.comb += nxt.eq(prod + (acc & ~clear.replicate(24)))
            m.d.sync += [acc.eq(nxt), self.o.payload.eq(nxt), self.o.valid.eq(1)]
        return m


class Nested(wiring.Component):
    """Nested and flipped stream interfaces, a member array, a struct payload."""

    def __init__(self):
        super().__init__({
            "a":   In(stream.Signature(8)),
            "b":   Out(stream.Signature(data.StructLayout({"x": 4, "y": 3}))),
            "grp": Out(wiring.Signature({
                "s": In(stream.Signature(5)),
                "t": Out(stream.Signature(6)),
                "d": In(3).array(2),
                "c": Out(2),
            })),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.a.ready.eq(self.b.ready), self.grp.s.ready.eq(self.grp.t.ready)]
        m.d.sync += [
            self.b.valid.eq(self.a.valid),
            self.b.payload.eq(self.a.payload ^ self.grp.d[0] ^ self.grp.d[1]),
            self.grp.t.valid.eq(self.grp.s.valid),
            self.grp.t.payload.eq(self.grp.s.payload + 1),
            self.grp.c.eq(self.a.payload[:2]),
        ]
        return m


def unused(elaboratable):
    """Mark an elaboratable a test builds but never elaborates (no UnusedElaboratable)."""
    elaboratable._MustUse__silence = True
    return elaboratable


# -- BoardTop ------------------------------------------------------------------

def test_flatten_ports_directions():
    flows = {path: flow for path, flow, _ in flatten_ports(unused(Nested()))}
    assert flows[("a", "valid")] == Flow.In and flows[("a", "payload")] == Flow.In
    assert flows[("a", "ready")] == Flow.Out
    assert flows[("b", "valid")] == Flow.Out and flows[("b", "ready")] == Flow.In
    # nested: In(stream) inside an Out(...) group keeps its own direction
    assert flows[("grp", "s", "valid")] == Flow.In
    assert flows[("grp", "s", "ready")] == Flow.Out
    assert flows[("grp", "t", "ready")] == Flow.In
    assert flows[("grp", "d", 0)] == Flow.In and flows[("grp", "d", 1)] == Flow.In
    assert flows[("grp", "c")] == Flow.Out


def test_boardtop_nested_streams_rtlil():
    top = BoardTop(Nested())
    # inputs: a.payload 8 + a.valid + b.ready + s.payload 5 + s.valid + t.ready + d 2x3
    assert top.in_bits == 8 + 1 + 1 + 5 + 1 + 1 + 6
    # outputs: a.ready + b.payload 7 + b.valid + s.ready + t.payload 6 + t.valid + c 2
    assert top.out_bits == 1 + 7 + 1 + 1 + 6 + 1 + 2
    assert top.valid_path == ("b", "valid")
    text = rtlil.convert(top, ports=[top.led, top.led_valid])
    assert "module" in text and "lfsr" in text and "dut" in text


def test_boardtop_rejects_non_component():
    with pytest.raises(TypeError):
        BoardTop(unused(Module()))


def test_boardtop_led_toggles():
    """The LFSR stimulus really exercises the design: the LED changes."""
    top = BoardTop(Mac8())
    seen_led, seen_valid = set(), set()

    async def bench(ctx):
        for _ in range(64):
            await ctx.tick()
            seen_led.add(ctx.get(top.led))
            seen_valid.add(ctx.get(top.led_valid))

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen_led == {0, 1}
    assert seen_valid == {0, 1}


# -- report parsing --------------------------------------------------------------

SAMPLE_ICE40 = {
    "utilization": {
        "ICESTORM_LC":    {"used": 115, "available": 5280},
        "ICESTORM_DSP":   {"used": 1, "available": 8},
        "ICESTORM_RAM":   {"used": 2, "available": 30},
        "ICESTORM_SPRAM": {"used": 0, "available": 4},
        "SB_IO":          {"used": 3, "available": 39},
    },
    "fmax": {
        "cd_sync.clk":             {"achieved": 77.5374, "constraint": 50.0},
        "$PACKER_GND_NET_$glb_clk": {"achieved": 300.0, "constraint": 50.0},
    },
    "critical_paths": [],
}

SAMPLE_ECP5 = {
    "utilization": {
        "TRELLIS_COMB": {"used": 47, "available": 83640},
        "TRELLIS_FF":   {"used": 83, "available": 83640},
        "MULT18X18D":   {"used": 1, "available": 156},
        "DP16KD":       {"used": 3, "available": 208},
    },
    "fmax": {"$glbnet$cd_sync.clk": {"achieved": 144.404, "constraint": 100.0}},
    "critical_paths": [],
}


def test_parse_report_ice40():
    r = parse_report(SAMPLE_ICE40, "icebreaker", netlist_cells={
        "SB_LUT4": 76, "SB_DFFSR": 40, "SB_DFFESR": 41, "SB_DFFE": 9, "SB_CARRY": 29},
        seed=3, bitstream="x.bin", elapsed_s=1.234)
    assert isinstance(r, FpgaReport)
    assert r.fmax_mhz == pytest.approx(77.537, abs=1e-3)   # main clock, not the GND "clock"
    assert r.target_mhz == 50.0
    assert (r.lut, r.ff, r.dsp, r.bram) == (76, 90, 1, 2)
    assert (r.lut_limit, r.ff_limit, r.dsp_limit, r.bram_limit) == (5280, 5280, 8, 30)
    assert r.seed == 3 and r.device.startswith("iCE40UP5K")
    assert r.cells["ICESTORM_LC"] == {"used": 115, "available": 5280}
    d = json.loads(r.to_json())
    assert d["lut"] == 76 and d["report"]["fmax"]["cd_sync.clk"]["achieved"] == 77.5374
    table = r.table()
    lines = table.splitlines()
    assert any(l.split()[:4] == ["DSP", "1", "8", "12.5%"] for l in lines)
    assert any(l.split()[:3] == ["LC", "115", "5280"] for l in lines)
    # without a netlist, LUT and FF fall back to logic cells
    r2 = parse_report(SAMPLE_ICE40, "icebreaker")
    assert r2.lut == r2.ff == 115
    with pytest.raises(Exception):
        r.lut = 0   # frozen


def test_parse_report_ecp5():
    r = parse_report(SAMPLE_ECP5, "ulx3s-85f", target_mhz=100.0)
    assert r.fmax_mhz == pytest.approx(144.404)
    assert (r.lut, r.ff, r.dsp, r.bram) == (47, 83, 1, 3)
    assert (r.lut_limit, r.dsp_limit, r.bram_limit) == (83640, 156, 208)
    assert r.timing_met
    # older reports: only slices (2 LUT4 + 2 FF each)
    old = {"utilization": {"TRELLIS_SLICE": {"used": 30, "available": 41820}},
           "fmax": {}}
    r2 = parse_report(old, "ulx3s-85f")
    assert (r2.lut, r2.ff, r2.fmax_mhz) == (60, 60, 0.0)


def _segment(kind, delay, cell, net=None, sources=()):
    seg = {"type": kind, "delay": delay, "from": {"cell": cell}, "to": {"cell": cell + "'"}}
    if net:
        seg.update(net=net, sources=list(sources))
    return seg


def test_critical_path_summary():
    clock = "posedge $glbnet$cd_sync.clk"
    slow = {"from": clock, "to": clock, "path": [
        _segment("clk-to-q", 0.5, "dut.a"),
        _segment("routing", 3.0, "dut.a", "dut.a[0]", ["/work/x/rtl/topk.py:10", "/share/lattice/ccu2c_sim.vh:9"]),
        _segment("logic", 0.4, "dut.lut"),
        _segment("routing", 2.0, "dut.lut", "dut.b", ["/work/x/rtl/topk.py:12", "/work/x/rtl/topk.py:10"]),
        _segment("setup", 0.1, "dut.b"),
    ]}
    other = {"from": "posedge other", "to": "posedge other", "path": [_segment("logic", 50.0, "x")]}
    path = critical_path({"critical_paths": [other, slow]})
    assert (path.logic_ns, path.routing_ns) == (1.0, 5.0)
    assert path.sources == ("rtl/topk.py:10", "rtl/topk.py:12")
    assert path.start == "dut.a" and path.end == "dut.b'"
    assert "6.00 ns" in path.describe() and "rtl/topk.py:12" in path.describe()
    assert critical_path({}) is None


def test_board_registry():
    assert set(BOARDS) == {"icebreaker", "ulx3s-85f"}
    assert BOARDS["icebreaker"].limits == {"lut": 5280, "ff": 5280, "dsp": 8, "bram": 30,
                                           "spram": 4}
    assert BOARDS["ulx3s-85f"].limits["dsp"] == 156


def test_unknown_board(tmp_path):
    with pytest.raises(ValueError, match="de0-nano") as exc:
        build(unused(Mac8()), "de0-nano", name="mac", build_dir=tmp_path, progress=None)
    assert "icebreaker" in str(exc.value) and "ulx3s-85f" in str(exc.value)
    with pytest.raises(ValueError, match="de0-nano"):
        parse_report(SAMPLE_ICE40, "de0-nano")


# -- real builds ---------------------------------------------------------------

@pytest.mark.fpga
@pytest.mark.slow
def test_build_icebreaker(tmp_path):
    lines = []
    r = build(Mac8(), "icebreaker", name="mac8", build_dir=tmp_path, seed=1,
              progress=lines.append)
    print(r.table())
    assert r.board == "icebreaker"
    assert r.fmax_mhz > 0
    assert r.target_mhz == 50.0
    # the 12 MHz board clock constraint was retargeted: nextpnr timed it at 50 MHz
    assert r.clocks["cd_sync.clk"]["constraint"] == pytest.approx(50.0, rel=1e-3)
    assert r.lut > 0 and r.ff > 0
    assert r.dsp >= 1                    # synth_ice40 -dsp maps the multiplier to SB_MAC16
    assert Path(r.bitstream).is_file() and Path(r.bitstream).stat().st_size > 0
    assert Path(r.bitstream).is_relative_to(tmp_path)
    assert r.elapsed_s > 0 and set(r.steps) == {"synth", "place-and-route", "pack"}
    assert any("synth" in l for l in lines) and any("place-and-route" in l for l in lines)
    assert any("pack" in l for l in lines)
    assert json.loads(r.to_json())["dsp"] == r.dsp


@pytest.mark.fpga
def test_failed_tool_reports_log_tail(tmp_path):
    """A tool failure surfaces as RuntimeError with the log tail."""
    class Bad(wiring.Component):
        o: Out(8)

        def elaborate(self, platform):
            from amaranth.hdl import Instance
            m = Module()
            m.submodules.x = Instance("NO_SUCH_PRIMITIVE_XYZ", o_Q=self.o)
            return m

    with pytest.raises(RuntimeError, match="synth") as exc:
        build(Bad(), "icebreaker", name="bad", build_dir=tmp_path, progress=None)
    assert "NO_SUCH_PRIMITIVE_XYZ" in str(exc.value)


@pytest.mark.fpga
def test_timeout_stops_a_tool_and_options_reach_nextpnr(tmp_path):
    """A tool over its time limit fails the build by name; timing_ripup and placer reach
    nextpnr's command in the build script; an unknown placer is refused."""
    with pytest.raises(RuntimeError, match="synth .* failed with exit status timeout"):
        build(Mac8(), "ulx3s-85f", name="mac8", build_dir=tmp_path, progress=None,
              timeout=0.01, timing_ripup=True, placer="static")
    script = (tmp_path / "mac8_ulx3s-85f_s1" / "build_mac8.sh").read_text()
    assert "--router router2" in script and "--tmg-ripup" in script and "--placer static" in script
    # refused before the component is looked at (an unused Elaboratable would warn when collected)
    with pytest.raises(ValueError, match="placer 'magic'"):
        build(None, "ulx3s-85f", name="mac8", build_dir=tmp_path, progress=None, placer="magic")
