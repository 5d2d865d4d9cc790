"""Delay lines that advance with a pipeline enable: registers when short, block RAM when long."""

from amaranth.hdl import Cat, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..pipeline import held_copies, one_hot_mux
from ..ram import block_ram, read

__all__ = ["DelayLine"]


class DelayLine(wiring.Component):
    """``o`` shows what ``i`` held ``length`` enabled cycles ago.

    After the ``e``-th cycle with ``en`` high, ``o`` equals the value ``i`` had during
    enabled cycle ``e - length + 1``: the behaviour of ``length`` registers in a row, each
    loaded only when ``en`` is high. The line never stalls and has no valid bits: every
    enabled cycle shifts it by one.

    Up to :attr:`REGISTERS` entries it is a shift register (with a tap multiplexer when the
    length is chosen at run time, steered by one-hot registers decoded from ``length`` a
    cycle after each ``reload``, in a copy per :attr:`TAP_BITS` bits of the entry: the
    decode of the length register fanned out to every bit was the 16-PE array's worst
    path at 89d1a0a). Longer lines are one ``lib.memory`` RAM of ``max_delay``
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
        Only when ``variable``: from a register.
    reload : In(1)
        Only when ``variable``: ``length`` takes a new value at the end of this cycle.
    """

    #: longest line built from registers
    REGISTERS = 4
    #: entry bits steered by one copy of a run-time length's tap selects
    TAP_BITS = 16

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
            ports["reload"] = In(1)
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
                width = Value.cast(self.o).shape().width
                groups = [(lo, min(lo + self.TAP_BITS, width)) for lo in range(0, width, self.TAP_BITS)]
                taps = self._taps(m, [self.length == k + 1 for k in range(n)], len(groups))
                m.d.comb += self.o.eq(Cat(
                    one_hot_mux([tap[g] for tap in taps],
                                [Value.cast(reg)[lo:hi] for reg in regs])
                    for g, (lo, hi) in enumerate(groups)))
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
            (is_one,), = self._taps(m, [self.length == 1], 1)
            m.d.comb += self.o.eq(Mux(is_one, one, word))
        return m

    def _taps(self, m, flags, copies):
        """``copies`` registers of each of ``flags`` (functions of ``length``), loaded in the
        cycle after a ``reload`` and after reset (when ``length`` holds its initial value)."""
        reloaded = Signal(init=1)
        m.d.sync += reloaded.eq(self.reload)
        return [held_copies(m, f"tap{k}_", copies, load=reloaded, value=flag)
                for k, flag in enumerate(flags)]

