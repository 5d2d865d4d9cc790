"""The ECP5 block-RAM output-register pass (fpga/netlist.py) and the RAM reads it serves
(rtl/ram.py): hand-made netlists for each rule, then Yosys's own netlist of a small design."""
import json
import subprocess

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from attnforge.fpga.build import tool_paths
from attnforge.fpga.netlist import absorb_output_registers
from attnforge.rtl.ram import CHECKED, block_ram, read


# -- hand-made netlists --------------------------------------------------------------------
# Net numbers: 2 clock, 3 enable, 10+i the RAM's DOB outputs, 40+i the flip-flops' Q.

def _ff(d, q, *, clk=2, ce=3, **params):
    parameters = {"CLKMUX": "CLK", "CEMUX": "CE", "LSRMUX": "LSR", "REGSET": "RESET",
                  "GSR": "ENABLED", **params}
    return {"type": "TRELLIS_FF", "parameters": parameters,
            "port_directions": {"CLK": "input", "CE": "input", "LSR": "input", "DI": "input",
                                "Q": "output"},
            "connections": {"CLK": [clk], "CE": [ce], "LSR": ["0"], "DI": [d], "Q": [q]}}


def _netlist(bits=4, width_a=18, ffs=None, extra=None, ports=None):
    outputs = {f"DOB{i}": [10 + i] for i in range(bits)}
    ram = {"type": "DP16KD",
           "parameters": {"DATA_WIDTH_A": width_a, "DATA_WIDTH_B": 18, "REGMODE_A": "NOREG",
                          "REGMODE_B": "NOREG", "CLKBMUX": "CLKB", "GSR": "ENABLED"},
           "port_directions": {"CLKB": "input", **{p: "output" for p in outputs}},
           "connections": {"CLKB": [2], **outputs}}
    cells = {"ram": ram}
    for i in range(bits):
        cells[f"ff{i}"] = _ff(10 + i, 40 + i)
    cells.update(ffs or {})
    cells.update(extra or {})
    return {"modules": {"top": {"ports": ports or {}, "cells": cells}}}


def test_absorbs_a_plain_register():
    net = _netlist()
    done = absorb_output_registers(net)
    assert [(a.ram, a.port, a.bits, a.buffers) for a in done] == [("ram", "B", 4, 0)]
    cells = net["modules"]["top"]["cells"]
    assert set(cells) == {"ram"}
    ram = cells["ram"]
    assert ram["parameters"]["REGMODE_B"] == "OUTREG"
    assert ram["parameters"]["REGMODE_A"] == "NOREG"
    assert ram["connections"]["OCEB"] == [3]
    assert [ram["connections"][f"DOB{i}"] for i in range(4)] == [[40 + i] for i in range(4)]


def test_absorbs_through_a_buffer_lut_and_without_enable():
    buffer = {"type": "LUT4", "parameters": {"INIT": "1010101010101010"},
              "port_directions": {"A": "input", "B": "input", "C": "input", "D": "input", "Z": "output"},
              "connections": {"A": [10], "B": ["0"], "C": ["0"], "D": ["0"], "Z": [90]}}
    net = _netlist(bits=1, ffs={"ff0": _ff(90, 40, CEMUX="1")}, extra={"buf": buffer})
    done = absorb_output_registers(net)
    assert [(a.bits, a.buffers) for a in done] == [(1, 1)]
    ram = net["modules"]["top"]["cells"]["ram"]
    assert set(net["modules"]["top"]["cells"]) == {"ram"}
    assert ram["connections"]["OCEB"] == ["1"]
    assert ram["connections"]["DOB0"] == [40]


def test_pseudo_dual_port_sets_both_halves():
    net = _netlist(bits=2, width_a=36)
    ram = net["modules"]["top"]["cells"]["ram"]
    ram["connections"]["DOA0"] = [20]
    ram["port_directions"]["DOA0"] = "output"
    net["modules"]["top"]["cells"]["ffa"] = _ff(20, 60)
    done = absorb_output_registers(net)
    assert [(a.port, a.bits) for a in done] == [("AB", 3)]
    assert ram["parameters"]["REGMODE_A"] == ram["parameters"]["REGMODE_B"] == "OUTREG"
    assert ram["connections"]["OCEA"] == ram["connections"]["OCEB"] == [3]


def _second_load():
    return {"type": "LUT4", "parameters": {"INIT": "0110011001100110"},
            "port_directions": {"A": "input", "B": "input", "Z": "output"},
            "connections": {"A": [11], "B": [12], "Z": [91]}}


@pytest.mark.parametrize("case", [
    "fan-out", "logic", "reset", "set", "other clock", "mixed enables", "other gsr", "module port",
])
def test_leaves_a_port_that_does_not_qualify(case):
    ffs, extra, ports = {}, {}, None
    if case == "fan-out":
        extra = {"other": _second_load()}
    elif case == "logic":          # DOB1 reaches its flip-flop through an inverter
        extra = {"not": {"type": "LUT4", "parameters": {"INIT": "0101010101010101"},
                         "port_directions": {"A": "input", "B": "input", "C": "input",
                                             "D": "input", "Z": "output"},
                         "connections": {"A": [11], "B": ["0"], "C": ["0"], "D": ["0"], "Z": [91]}}}
        ffs = {"ff1": _ff(91, 41)}
    elif case == "reset":
        ff = _ff(10, 40)
        ff["connections"]["LSR"] = [5]
        ffs = {"ff0": ff}
    elif case == "set":
        ffs = {"ff0": _ff(10, 40, REGSET="SET")}
    elif case == "other clock":
        ffs = {"ff0": _ff(10, 40, clk=7)}
    elif case == "mixed enables":
        ffs = {"ff0": _ff(10, 40, ce=8)}
    elif case == "other gsr":
        ffs = {"ff0": _ff(10, 40, GSR="DISABLED")}
    elif case == "module port":
        ports = {"out": {"direction": "output", "bits": [12]}}
    net = _netlist(ffs=ffs, extra=extra, ports=ports)
    before = json.dumps(net, sort_keys=True)
    assert absorb_output_registers(net) == []
    assert json.dumps(net, sort_keys=True) == before


# -- the reads of rtl/ram.py -----------------------------------------------------------------

class _Ram(wiring.Component):
    """A 512 × 16 block RAM, one write port and one read of ``registers`` registers,
    elaborated for ``target`` whatever platform it is given."""

    def __init__(self, target=None, registers=2):
        self.target, self.registers = target, registers
        super().__init__({"w_addr": In(9), "w_data": In(16), "w_en": In(1),
                          "r_addr": In(9), "r_en": In(1), "r_data": Out(16)})

    def elaborate(self, platform):
        m = Module()
        mem = block_ram(m, "mem", shape=unsigned(16), depth=512)
        wp = mem.write_port()
        m.d.comb += [wp.addr.eq(self.w_addr), wp.data.eq(self.w_data), wp.en.eq(self.w_en)]
        m.d.comb += self.r_data.eq(read(m, "mem", mem, addr=self.r_addr, en=self.r_en,
                                        platform=self.target, writes=[wp],
                                        registers=self.registers))
        return m


@pytest.mark.parametrize("target", [None, CHECKED], ids=["plain", "checked"])
def test_read_latency_and_collision_poison(target):
    """Two registers: the word two enabled cycles later; a read meeting a write to its
    address returns the old word, inverted on CHECKED."""
    dut = _Ram(target)
    seen = []

    async def bench(ctx):
        for addr, value in ((5, 0x1234), (6, 0x00ff)):
            ctx.set(dut.w_addr, addr); ctx.set(dut.w_data, value); ctx.set(dut.w_en, 1)
            await ctx.tick()
        ctx.set(dut.r_en, 1)
        ctx.set(dut.r_addr, 5); ctx.set(dut.w_en, 0)       # a plain read
        await ctx.tick()
        ctx.set(dut.r_addr, 6); ctx.set(dut.w_addr, 6); ctx.set(dut.w_data, 0xaaaa); ctx.set(dut.w_en, 1)
        await ctx.tick()                                      # a read meeting a write
        ctx.set(dut.w_en, 0)
        for _ in range(3):
            seen.append(ctx.get(dut.r_data))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen[0] == 0x1234
    assert seen[1] == (0x00ff if target is None else 0xff00)
    assert seen[2] == 0xaaaa                                  # r_en held: 6 read again, written


def _synthesize(component, tmp_path):
    rtlil_path, json_path = tmp_path / "top.il", tmp_path / "top.json"
    rtlil_path.write_text(rtlil.convert(component, name="top"))
    subprocess.run([str(tool_paths()["yosys"]), "-q", "-p",     # YoWASP: paths under the cwd
                    "read_rtlil top.il; synth_ecp5 -top top -json top.json"],
                   cwd=tmp_path, check=True, capture_output=True)
    return json.loads(json_path.read_text())


def _counts(netlist):
    cells = netlist["modules"]["top"]["cells"].values()
    return {t: sum(c["type"] == t for c in cells) for t in ("DP16KD", "TRELLIS_FF", "LUT4")}


@pytest.mark.fpga
def test_yosys_maps_the_read_into_the_block_ram(tmp_path):
    """Yosys: no collision logic (no write-delay flip-flops, no bypass LUTs); the pass then
    takes the second register into the RAM, leaving no fabric cell at all."""
    netlist = _synthesize(_Ram(), tmp_path)
    assert _counts(netlist) == {"DP16KD": 1, "TRELLIS_FF": 16, "LUT4": 0}
    done = absorb_output_registers(netlist)
    assert [a.bits for a in done] == [16]
    assert _counts(netlist) == {"DP16KD": 1, "TRELLIS_FF": 0, "LUT4": 0}
