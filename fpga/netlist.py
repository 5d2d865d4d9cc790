"""Post-synthesis netlist pass: move the register after an ECP5 block RAM into the RAM.

A DP16KD has an output register (``REGMODE_A/B = "OUTREG"``, enabled by ``OCEA/B``), but
Yosys's block-RAM mapping (``brams_map_16kd.v``) always writes ``"NOREG"``, so a read that
the RTL registers right after the RAM pays the RAM's clock-to-output twice over: nextpnr-ecp5
(speed 6) times ``DOB`` at 5.83 ns from ``CLKB`` without the output register and at 0.96 ns
with it. :func:`absorb_output_registers` finds, in the Yosys JSON that ``synth_ecp5``
writes, every RAM read port whose every used data output drives exactly one fabric
flip-flop (directly or through a one-input buffer LUT that abc leaves there), with one clock
(the RAM port's), one clock enable, no set/reset and a power-up value of 0. It sets the
port's ``REGMODE`` to ``"OUTREG"``, its ``OCE`` to the flip-flops' clock enable, deletes the
flip-flops (and buffers) and drives their outputs from the RAM. (The global set/reset, as
Amaranth's ECP5 platform uses it for the power-on reset, must reach both alike: the
flip-flops' ``GSR`` must be the RAM's.) The register loads the same
value on the same cycles, so the cycles are those of the RTL the simulators checked.

Ports stay as they are when any used output has another load, is a module port, or goes
through logic; in the 36-bit pseudo-dual-port mode (``DATA_WIDTH_A = 36``: write on A, read
on B, data on ``DOA`` and ``DOB``) all 36 outputs must qualify, and both ``REGMODE`` and
both ``OCE`` are set.

Run by :func:`attnforge.fpga.build.build` between Yosys and nextpnr on ECP5 boards; by hand:
``python -m attnforge.fpga.netlist top.json``.
"""

import argparse
import json
from collections import defaultdict
from dataclasses import dataclass

__all__ = ["Absorbed", "absorb_output_registers", "absorb_file"]

_RAM = "DP16KD"
_FF = "TRELLIS_FF"
_LUT = "LUT4"
_LUT_INPUTS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class Absorbed:
    """One RAM read port whose output register went into the RAM."""
    ram: str
    port: str           # "A", "B", or "AB" (36-bit pseudo-dual-port read)
    bits: int           # flip-flops removed
    buffers: int        # buffer LUTs removed


def _param(cell, name, default):
    """A cell parameter as a string; Yosys pads a string of only 0s and 1s with a space."""
    value = cell.get("parameters", {}).get(name, default)
    return value.rstrip(" ") if isinstance(value, str) else value


def _int_param(cell, name, default):
    value = cell.get("parameters", {}).get(name)
    if value is None:
        return default
    return value if isinstance(value, int) else int(value.rstrip(" "), 2)


class _Netlist:
    """Connectivity of one module of a Yosys JSON netlist: who drives and who reads a bit."""

    def __init__(self, module):
        self.cells = module["cells"]
        self.loads = defaultdict(list)          # bit -> [(cell, port)]
        self.port_bits = {b for p in module.get("ports", {}).values() for b in p["bits"]
                          if isinstance(b, int)}
        for name, cell in self.cells.items():
            for port, bits in cell["connections"].items():
                if cell["port_directions"].get(port) != "output":
                    for b in bits:
                        if isinstance(b, int):
                            self.loads[b].append((name, port))

    def only_load(self, bit):
        """The single ``(cell, port)`` reading ``bit``, or None (several, none, or a port)."""
        loads = self.loads.get(bit, [])
        if len(loads) != 1 or bit in self.port_bits:
            return None
        return loads[0]

    def pin(self, cell, port):
        bits = self.cells[cell]["connections"].get(port)
        return bits[0] if bits else None


def _is_buffer(cell, bit):
    """Whether LUT4 ``cell`` outputs ``bit`` unchanged: every input is ``bit`` or constant."""
    init = _int_param(cell, "INIT", 0)
    pins = cell["connections"]
    for value in (0, 1):
        index = 0
        for k, name in enumerate(_LUT_INPUTS):
            b = pins.get(name, ["0"])[0]
            if b == bit:
                v = value
            elif b in ("0", "1"):
                v = int(b)
            else:
                return False
            index |= v << k
        if (init >> index) & 1 != value:
            return False
    return True


def _register_of(net, bit):
    """``(flip-flop, buffer LUT or None)`` that alone registers ``bit``, or None."""
    load = net.only_load(bit)
    buffer = None
    if load and net.cells[load[0]]["type"] == _LUT and _is_buffer(net.cells[load[0]], bit):
        buffer = load[0]
        load = net.only_load(net.pin(buffer, "Z"))
    if not load or load[1] != "DI" or net.cells[load[0]]["type"] != _FF:
        return None
    return load[0], buffer


def _plain(ff):
    """Whether a TRELLIS_FF is a plain register with power-up value 0: rising edge, no
    set/reset, no preload."""
    pins = ff["connections"]
    no_lsr = (pins.get("LSR", ["0"])[0] == "0" and _param(ff, "LSRMUX", "LSR") == "LSR") or \
             (pins.get("LSR", ["0"])[0] == "1" and _param(ff, "LSRMUX", "LSR") == "INV")
    return (no_lsr and _param(ff, "CLKMUX", "CLK") == "CLK" and _param(ff, "REGSET", "RESET") == "RESET"
            and pins.get("M", ["x"])[0] in ("x", "0") and _param(ff, "CEMUX", "1") in ("1", "CE"))


def _enable(ff):
    """The flip-flop's clock enable as a connection: ``["1"]`` for none."""
    return ["1"] if _param(ff, "CEMUX", "1") == "1" else ff["connections"].get("CE", ["1"])


def _try_port(net, name, outputs, clock):
    """The registers of RAM ``name``'s ``outputs`` (pin names) if all qualify, else None."""
    ram = net.cells[name]
    gsr = _param(ram, "GSR", "DISABLED")
    regs, enable = [], None
    for pin in outputs:
        bits = ram["connections"].get(pin)
        if not bits or not isinstance(bits[0], int) or not net.loads.get(bits[0]):
            continue                                    # unused output
        found = _register_of(net, bits[0])
        if found is None:
            return None
        ff = net.cells[found[0]]
        if not _plain(ff) or ff["connections"].get("CLK") != clock or \
                _param(ff, "GSR", "DISABLED") != gsr:
            return None
        if enable is None:
            enable = _enable(ff)
        elif _enable(ff) != enable:
            return None
        regs.append((pin, *found))
    return (regs, enable) if regs else None


def absorb_output_registers(netlist):
    """Absorb output registers into every qualifying DP16KD port of ``netlist`` (a parsed
    Yosys JSON, changed in place). Returns the :class:`Absorbed` ports."""
    done = []
    for module in netlist["modules"].values():
        net = _Netlist(module)
        for name in sorted(n for n, c in net.cells.items() if c["type"] == _RAM):
            ram = net.cells[name]
            if _int_param(ram, "DATA_WIDTH_A", 18) == 36:
                ports = [("AB", "B", [f"DO{p}{n}" for p in "AB" for n in range(18)])]
            else:
                ports = [(p, p, [f"DO{p}{n}" for n in range(18)]) for p in "AB"]
            for label, clocked, outputs in ports:
                if any(_param(ram, f"REGMODE_{p}", "NOREG") != "NOREG" for p in label):
                    continue
                if _param(ram, f"CLK{clocked}MUX", f"CLK{clocked}") not in (f"CLK{clocked}", "CLK"):
                    continue
                clock = ram["connections"].get(f"CLK{clocked}")
                found = _try_port(net, name, outputs, clock)
                if found is None:
                    continue
                regs, enable = found
                for p in label:
                    ram["parameters"][f"REGMODE_{p}"] = "OUTREG"
                    ram["connections"][f"OCE{p}"] = list(enable)
                    ram["port_directions"][f"OCE{p}"] = "input"
                buffers = 0
                for pin, ff, buffer in regs:
                    ram["connections"][pin] = list(net.cells[ff]["connections"]["Q"])
                    del net.cells[ff]
                    if buffer is not None:
                        del net.cells[buffer]
                        buffers += 1
                done.append(Absorbed(name, label, len(regs), buffers))
    return done


def absorb_file(path):
    """:func:`absorb_output_registers` on the Yosys JSON file ``path``, rewritten in place."""
    with open(path) as f:
        netlist = json.load(f)
    done = absorb_output_registers(netlist)
    with open(path, "w") as f:
        json.dump(netlist, f)
    return done


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("netlist", help="Yosys JSON from synth_ecp5, rewritten in place")
    args = parser.parse_args(argv)
    done = absorb_file(args.netlist)
    print(f"{len(done)} block-RAM read ports took their output register "
          f"({sum(a.bits for a in done)} flip-flops, {sum(a.buffers for a in done)} buffer LUTs)")


if __name__ == "__main__":
    main()
