"""Delay lines that advance with a pipeline enable: registers when short, block RAM when long."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..ram import block_ram, read

__all__ = ["DelayLine"]


class DelayLine(wiring.Component):
    """``o`` shows what ``i`` held ``length`` enabled cycles ago.

    After the ``e``-th cycle with ``en`` high, ``o`` equals the value ``i`` had during
    enabled cycle ``e - length + 1``: the behaviour of ``length`` registers in a row, each
    loaded only when ``en`` is high. The line never stalls and has no valid bits: every
    enabled cycle shifts it by one.

    Up to :attr:`REGISTERS` entries it is a shift register (with a tap multiplexer when the
    length is chosen at run time). Longer lines are one ``lib.memory`` RAM of ``max_delay``
    words (a power of two, :func:`~attnforge.rtl.ram.block_ram`) read through a register: a write pointer
    cycling through the words and a read pointer ``length - 1`` behind it, kept in a
    register of its own (so the length's decode and the subtraction stay off the RAM's
    address fan-out; after a change of ``length`` it catches up one cycle later); a run-time
    length of 1 takes a register beside the RAM.

    Parameters
    ----------
    shape : shape-like
        One entry.
    max_delay : int
        The (largest) length, ≥ 1; a power of two when above :attr:`REGISTERS`.
    variable : bool
        False: the length is ``max_delay``. True: a ``length`` input chooses it at run
        time (``1 … max_delay``); entries in the line when it changes come out garbled.

    Attributes
    ----------
    en : In(1)
    i : In(shape)
    o : Out(shape)
    length : In(range(max_delay + 1))
        Only when ``variable``.
    """

    #: longest line built from registers
    REGISTERS = 4

    def __init__(self, shape, max_delay, *, variable=False):
        if max_delay < 1:
            raise ValueError(f"max_delay={max_delay} must be ≥ 1")
        if max_delay > self.REGISTERS:
            exact_log2(max_delay)
        self._shape = shape
        self.max_delay = max_delay
        self.variable = variable
        ports = {"en": In(1), "i": In(shape), "o": Out(shape)}
        if variable:
            ports["length"] = In(range(max_delay + 1))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        n = self.max_delay
        if n <= self.REGISTERS:
            regs = [Signal(self._shape, name=f"r{k}") for k in range(n)]
            with m.If(self.en):
                m.d.sync += regs[0].eq(self.i)
                for k in range(1, n):
                    m.d.sync += regs[k].eq(regs[k - 1])
            if not self.variable:
                m.d.comb += self.o.eq(regs[-1])
            else:
                with m.Switch(self.length):
                    for k in range(n):
                        with m.Case(k + 1):
                            m.d.comb += self.o.eq(regs[k])
            return m

        # The read address trails the write pointer by ``length - 1`` ≥ 1 words (a length of
        # 1 takes the register beside the RAM), so no read that meets the write is used.
        ram = block_ram(m, "ram", shape=self._shape, depth=n)
        wr = ram.write_port()
        ptr = Signal(ceil_log2(n))
        addr = Signal(ceil_log2(n), init=(1 - n) % n)       # ptr - length + 1
        length = self.length if self.variable else n
        m.d.comb += [wr.addr.eq(ptr), wr.data.eq(self.i), wr.en.eq(self.en)]
        with m.If(self.en):
            m.d.sync += ptr.eq(ptr + 1)
        m.d.sync += addr.eq((ptr + self.en - length + 1)[:len(ptr)])
        word = read(m, "ram", ram, addr=addr, en=self.en, platform=platform, writes=[wr])
        if not self.variable:
            m.d.comb += self.o.eq(word)
        else:
            one = Signal(self._shape)
            with m.If(self.en):
                m.d.sync += one.eq(self.i)
            m.d.comb += self.o.eq(Mux(self.length == 1, one, word))
        return m
