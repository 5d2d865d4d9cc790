"""Block RAMs whose read-during-write result is never used, read through registers.

Amaranth's synchronous read port promises a value on a read that meets a write to the
same address (the old word, or the new one if transparent). An ECP5 DP16KD in the
pseudo-dual-port mode promises neither, so Yosys emulates the promise in the fabric: it
delays every write by a cycle and puts a bypass multiplexer after the RAM's output
(``memory_libmap``: "emulate read-first behavior", "emulate transparency"). That
multiplexer sits between the RAM's 5.8 ns clock-to-output and the register behind it, and
it costs a flip-flop per written bit and a LUT per read bit.

The memories here are used so that no collision's result is ever consumed (each caller
says why), so :func:`block_ram` marks them ``no_rw_check`` and :func:`read` reads them
with a combinational port followed by registers: Yosys's ``memory_dff`` merges the first
register into the RAM as its read register and, as the attribute asks, drops the collision
logic; a second register (``registers=2``) right after it is what
:mod:`attnforge.fpga.netlist` moves into the RAM's output register (0.96 ns
clock-to-output). The cycles are those of a synchronous read port (and one register).

The claim "no collision is consumed" is tested, not assumed: elaborated for
:data:`CHECKED` (the platform the testbenches generate their Verilog for), a read that
meets a write to its address returns the word inverted, so any output that depended on it
fails the bit-exact comparison with the model.
"""

from amaranth.hdl import Cat, Mux, Signal
from amaranth.lib import memory

__all__ = ["CHECKED", "CheckedPlatform", "block_ram", "read"]


class CheckedPlatform:
    """Elaboration target of the testbenches' Verilog: reads that collide return garbage."""
    family = None
    poison_collisions = True


#: the platform instance :func:`attnforge.gen.blocks.generate` passes for the testbenches
CHECKED = CheckedPlatform()


def block_ram(m, name, *, shape, depth, init=()):
    """A ``memory.Memory`` added to ``m`` as ``name``, marked ``no_rw_check`` for Yosys:
    a read that meets a write to its address may return anything."""
    mem = memory.Memory(shape=shape, depth=depth, init=init, attrs={"no_rw_check": 1})
    m.submodules[name] = mem
    return mem


def read(m, name, mem, *, addr, en, platform, writes, registers=1):
    """``mem[addr]`` through ``registers`` registers, each loaded when ``en``.

    ``writes``: the write ports of ``mem`` (a read meeting one of them is poisoned on
    :data:`CHECKED`). Returns the last register (a View for a layout ``mem.shape``).
    """
    if registers < 1:
        raise ValueError(f"registers must be at least 1, not {registers}")
    port = mem.read_port(domain="comb")
    m.d.comb += port.addr.eq(addr)
    data = port.data.as_value() if hasattr(port.data, "as_value") else port.data
    if getattr(platform, "poison_collisions", False):
        hit = Cat(w.en.any() & (w.addr == addr) for w in writes).any()
        data = Mux(hit, ~data, data)
    for k in range(registers):
        reg = Signal(mem.shape, name=f"{name}_rd{k}", reset_less=True)
        with m.If(en):
            m.d.sync += reg.eq(data)
        data = reg
    return data
