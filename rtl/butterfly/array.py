"""The streaming FFT array: ``lanes`` samples per cycle through ``log2(n_max)`` PE columns.

Architecture
------------
A multi-path delay-feedforward pipeline (radix-2 MDF, all PEs busy every cycle) built from
the plan of :mod:`.schedule`:

* ``log2(n_max)`` **PE columns** of ``lanes/2`` :class:`~.pe.ButterflyPE` each, one FFT stage
  per column; a column pairs two lanes of the same beat.
* **Exchanges** (delay-switch-delay) before the columns whose stage pairs samples of
  different beats: ``log2(n_max/lanes)`` fixed ones, delays ``n_max/(2·lanes)``, …, 2, 1
  beats, and one whose delay ``N/(2·lanes)`` follows the transform length (the *return*
  exchange: it brings back the lane bit the first exchange evicted). An exchange of ``D``
  beats holds ``D`` beats of ``lanes/2`` samples twice (before and after its switch).
* A **reorder buffer** (:class:`~.reorder.ReorderBuffer`): three transforms in ``lanes``
  conflict-free banks behind a write register, so the output is in natural order.

Costs, for ``lanes = P`` and ``n_max``, ``S = log2(n_max)`` (``lanes ≥ 2``):

* PEs: ``(P/2)·S`` (:attr:`ButterflyArray.pes`). Real multipliers
  (:attr:`ButterflyArray.multipliers`, :class:`~.pe.ButterflyPE`'s plans): 4 per PE with
  ``linear = 1`` (``2·P·S``); FFT-only (``linear = 0``), 3 per PE except in the first four
  columns, which need none: twiddles 1 and −j only, then those of ``W_8`` and ``W_16``
  (a few constant magnitudes, products by shifts and adds) (``3·(P/2)·(S − 4)``). Example:
  ``P = 8``, ``n_max = 1024``: 40 PEs, 160 multipliers, or 72 FFT-only.
* Exchange memory: ``P·(n_max/P − 1) + n_max/2 = 1.5·n_max − P`` complex samples (lines of
  up to :attr:`.delay.DelayLine.REGISTERS` beats are registers, longer ones block RAM), plus
  ``n_max/(2·P)`` flip-flops of valid bits for the return exchange. Example: ``P = 8``,
  ``n_max = 1024``: exchanges of 64, 32, 16, 8, 4, 2, 1 beats and a return one of up to 64,
  1528 samples.
* Reorder buffer: ``3·n_max`` complex samples (``P`` banks of ``3·n_max/P``; one DP16KD a
  bank while ``n_max/P ≤ 170``). Twiddle ROMs:
  a column whose largest stage is ``k`` holds ``2**k`` twiddles (``≤ n_max/2``), one read
  port per PE.
* Latency (registers from the input register to the reorder buffer,
  :func:`attnforge.sim.butterfly.fft_array_pipeline`): ``1 + Σ`` active exchange delays
  ``+ COLUMN_LATENCY`` (``2 + PE_LATENCY``) per active column ``+ 1`` per bypassed one, about
  ``1.5·N/P + 8·log2(n_max)``. A transform's last output handshake comes
  ``2·N/P + pipeline + 4`` cycles after its first input handshake (``+ 3`` when
  ``N = P``: the input slot, whose enable sees a beat a cycle after it enters, the
  reorder buffer's write and read registers; e.g. ``P = 8``, ``N = n_max = 64``:
  16 + 60 + 4, a latency of 81 cycles counting both);
  :func:`attnforge.sim.butterfly.fft_array_cycles` replays the cycles exactly, length
  changes included.

Transform length
----------------
``N = 2**log2n``, ``lanes ≤ N ≤ n_max``, is chosen per transform by the ``log2n`` field of
its first input beat (values outside ``[log2(lanes), log2(n_max)]`` are clamped and set
``error``). A transform is exactly ``N/lanes`` beats; ``last`` is checked against that count
(a mismatch sets ``error``; the count wins). Transforms of one length stream back to back
at ``lanes`` samples per cycle; a transform of another length waits at the input until the
columns hold no sample of the previous ones (one pipeline latency, the reorder buffer keeps
streaming meanwhile).

Arithmetic and order
--------------------
Every butterfly is the model's (:func:`attnforge.sim.butterfly.fft` with the ``"fixed"``
policy: shift 1 per stage, ``scale_log2 = log2 N``); twiddles come from ROMs filled at
elaboration with :meth:`ButterflyConfig.twiddle`, so the output equals the model bit for bit.
Input and output are in natural order: input beat ``t`` holds samples ``t·P … t·P+P−1``,
output beat ``t`` holds bins ``t·P … t·P+P−1``.

Butterfly linear layers (``linear=1``)
--------------------------------------
A transform whose first beat has ``mode = REAL`` runs a butterfly linear layer
(:func:`attnforge.sim.butterfly.butterfly`: stage ``k`` with stride ``2**k``) on the real
parts: the same columns, each PE in real 2×2 mode with its weights ``a, b, c, d`` read from
its own weight memory (``n_max/lanes`` words, addressed by the beat number beside the
column's input register) and the column's shift. The columns pair index bits from the most
significant down, so a real transform first passes an **input bit-reversal buffer** (a
:class:`~.reorder.ReorderBuffer` on the identity slot map, two transforms deep: ``N/lanes``
cycles more latency, full rate); the output is in natural order like an FFT's, imaginary
parts 0. Weights come through the ``w`` stream, one butterfly per beat, at the column, PE
and address of :meth:`.schedule.ArraySchedule.weight_map` for the layer's ``N``. A pending
write holds the input at the next transform boundary until the array is empty, so a
transform never sees half-written weights. An accepted weight beat is written a cycle later,
from registers (so the stream's ready, computed from the front's state, does not drive the
write enables of every PE's memory); the first beat after it reaches a column two cycles
later at the earliest. Real transforms must have the ``N`` the weights
were written for. Cost: ``log2(n_max)·n_max/2`` words of ``4·twiddle_bits`` bits of weights
and ``2·n_max`` complex samples of bit-reversal buffer.

Flow control
------------
One pipeline enable moves every column, exchange and delay line at once; valid/first/last
flags travel with the beats. It is high when the last column's beat can go into the reorder
buffer (or there is none) and either the **input slot** (a three-beat FIFO in front of the
columns, filled from the input or the bit-reversal buffer) held a beat the cycle before
(one not taken then) or the columns are between transforms, where bubbles are pushed in to drain the pipeline. Inside a transform
the pipeline stalls on an empty slot, so every transform's beats stay contiguous, which the
exchanges rely on. Stream handshakes exist only at the input and at the reorder buffer's
output (and at ``w``). A change of length or mode drains the columns first.

The enable drives the clock enables of nearly every flip-flop, block RAM and multiplier
(some 15,000 flip-flops at ``lanes = 4``, ``n_max = 256``), so it is not one net: it is
held in :attr:`ButterflyArray.CORE_ENABLES` ``+ Σ`` per-column and per-exchange flip-flop
copies (:func:`attnforge.rtl.pipeline.enable_copies`; one per PE, one per column's
registers, two per exchange), each computed a cycle ahead from the next state of the slot,
the beat counter, the last column's valid bit and the reorder buffer's room
(``ReorderBuffer.w_ready_next``). The slot is what makes that possible: the enable depends
on registers only, never on this cycle's input handshake (a beat entering an empty slot
moves the columns a cycle later; the third place keeps the input at full rate, the slot
holding two beats in the steady state), nor on the output's ready (the reorder buffer's
room next cycle leaves out a region read out this cycle). It costs two cycles of latency,
and transforms of one beat (``N = lanes``) stream at five in six cycles.

Chaining arrays column to column (``input_order``, ``output_order``)
--------------------------------------------------------------------
Two butterfly-linear layers in a row (the butterfly FFN, :mod:`.ffn`) need no reordering
between them: a real transform leaves the last PE column in the final slot order
(:meth:`.schedule.ArraySchedule.final_map`), and a second array can take exactly that order.

* ``output_order="columns"``: no reorder buffer; ``o`` carries the last column's beats
  through a two-beat FIFO (:func:`input_beat`, with ``log2n`` and ``mode`` of the transform
  on every beat; one cycle of latency), the pipeline stalling while it is full. A ``hold``
  input then holds the array's input at the next transform boundary, as a pending weight
  write does.
* ``input_order="columns"`` (``linear=1``): the input comes in that order, so the array has
  no input bit-reversal buffer and its columns follow the chained schedule
  (:class:`~.schedule.ArraySchedule` with ``chained=True``: one more run-time exchange, the
  *top* column); every transform runs in real mode (an FFT ``mode`` sets ``error``). The
  output is in natural order through its reorder buffer, like any array's.
"""

from amaranth.hdl import Cat, Const, EnableInserter, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ...configs.butterfly import ButterflyConfig
from ..pipeline import enable_copies, held_copies
from ..ram import block_ram, read
from ..stream import vector_beat
from .delay import DelayLine
from .pe import ButterflyPE, Mode, complex_layout, fft_coefs
from .reorder import ReorderBuffer, output_beat
from .schedule import ArraySchedule, BitReverseSchedule

__all__ = ["input_beat", "output_beat", "weight_beat", "ButterflyArray"]


def input_beat(cfg):
    """``lanes`` complex samples, ``log2n`` and ``mode`` (read on a transform's first beat),
    ``last``."""
    return vector_beat(cfg.lanes, complex_layout(cfg.width), log2n=range(cfg.stages_max + 1),
                       mode=Mode)


def weight_beat(cfg):
    """One butterfly's real-mode weights, written into a PE's weight memory.

    ``column``, ``pe``, ``addr``: where (:meth:`.schedule.ArraySchedule.weight_map`);
    ``coef``: ``a, b, c, d`` in Q2.F; ``shift``: the column's per-butterfly shift in real mode
    (every write to a column sets it).
    """
    P, lmax = cfg.lanes, cfg.stages_max
    return data.StructLayout({
        "column": range(max(lmax, 2)),
        "pe": range(max(P // 2, 2)),
        "addr": range(max(cfg.n_max // P, 2)),
        "coef": data.ArrayLayout(signed(cfg.twiddle_bits), 4),
        "shift": signed(cfg.shift_bits),
    })


def column_twiddles(cfg, kmax):
    """The twiddles of a column whose largest stage is ``kmax``: ``W_{2**(kmax+1)}**idx``,
    ``idx < 2**kmax`` (its ROM, in address order)."""
    return [cfg.twiddle(idx, 2 << kmax) for idx in range(1 << kmax)]


def _index_bits(cfg):
    return max(cfg.stages_max - (cfg.lanes.bit_length() - 1), 1)


def _beat(cfg):
    """A beat inside the array: samples and flags (no handshake: the pipeline enable moves it).

    ``index``: the beat's number from its transform's first beat, bubbles included (set by
    the array's input register, modulo ``n_max/lanes``): what the exchanges' switches and
    the columns' twiddle and weight addresses follow.
    """
    return vector_beat(cfg.lanes, complex_layout(cfg.width), valid=1, first=1,
                       index=_index_bits(cfg))


def _flags(cfg):
    return data.StructLayout({"valid": 1, "first": 1, "last": 1, "index": _index_bits(cfg)})


class _Exchange(wiring.Component):
    """Swap a time slot of ``delay`` beats with lane bit ``p-1``: delay, switch, delay.

    Lanes with bit ``p-1`` clear (upper) go to the switch, then through a ``delay``-beat line;
    lanes with it set (lower) go through a ``delay``-beat line, then the switch, then out.
    The switch crosses while the input beat's ``index`` has its ``delay`` bit set: two
    registers (one per line's multiplexers) computed from ``i_index_next``, the index ``i``
    shows after a cycle with ``en`` high; a run-time ``delay`` must come from a register
    that changes only with the array empty (the first cycle after a change may switch
    bubbles by the old length). Latency
    ``delay`` beats; a beat's flags (its index among them) ride the upper line. ``active``
    low: the beat passes combinationally, and the lines fill with bubbles (so no stale beat
    leaves them when the exchange comes back). ``en`` holds two copies of the pipeline
    enable: bit 0 moves the lower line, bit 1 the upper line and the valid bits; ``active``,
    two copies of that flag: bit 0 steers the lower lanes' output multiplexers, bit 1 the rest.

    With a run-time ``delay``, lengthening the lines would bring back entries that already
    left; so the valid bits sit in a shift register of their own, which ``clear`` (pulsed
    when the transform length changes, the array being empty) wipes.
    """

    ENABLES = 2

    def __init__(self, cfg, max_delay, *, variable):
        self._cfg = cfg
        self._max = max_delay
        self._variable = variable
        ports = {"en": In(self.ENABLES), "active": In(2), "i": In(_beat(cfg)),
                 "i_index_next": In(_index_bits(cfg)), "o": Out(_beat(cfg))}
        if variable:
            ports["delay"] = In(range(max_delay + 1))
            ports["clear"] = In(1)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        cfg, P = self._cfg, self._cfg.lanes
        half = P // 2
        sample = complex_layout(cfg.width)
        low_line = DelayLine(data.ArrayLayout(sample, half), self._max, variable=self._variable)
        up_line = DelayLine(data.StructLayout({"data": data.ArrayLayout(sample, half),
                                               "flags": _flags(cfg)}),
                            self._max, variable=self._variable)
        m.submodules.low_line = low_line
        m.submodules.up_line = up_line
        delay = self.delay if self._variable else self._max
        en = self.en[1]
        for line, line_en in ((low_line, self.en[0]), (up_line, en)):
            m.d.comb += line.en.eq(line_en)
            if self._variable:
                m.d.comb += [line.length.eq(delay), line.reload.eq(self.clear)]

        # The switch's state for the input beat, a register per line computed from the index
        # the input will show next (so the length's decode and the index comparison stay off
        # the 2·lanes·width multiplexers it steers); bit 0 for the lower lanes' outputs.
        cross_next = (self.i_index_next & delay) != 0
        cross = Cat(*(held_copies(m, f"cross{n}", 1, load=self.en[n], value=cross_next)[0]
                      for n in range(2)))

        inp, out = self.i, self.o
        for k in range(half):
            up, low = inp.data[k], inp.data[k + half]
            m.d.comb += [
                low_line.i[k].eq(low),
                up_line.i.data[k].eq(Mux(cross[1], low_line.o[k], up)),
            ]
        m.d.comb += [
            up_line.i.flags.valid.eq(inp.valid & self.active[1]),
            up_line.i.flags.first.eq(inp.first),
            up_line.i.flags.last.eq(inp.last),
            up_line.i.flags.index.eq(inp.index),
        ]
        out_valid = up_line.o.flags.valid
        if self._variable:
            valid_line = Signal(self._max, name="valid_line")
            with m.If(self.clear):
                m.d.sync += valid_line.eq(0)
            with m.Elif(en):
                m.d.sync += valid_line.eq(Cat(inp.valid & self.active[1], valid_line[:-1]))
            out_valid = valid_line.bit_select((delay - 1)[:len(self.delay)], 1)
        for k in range(half):
            m.d.comb += out.data[k + half].eq(Mux(self.active[0],
                                                  Mux(cross[0], inp.data[k], low_line.o[k]),
                                                  inp.data[k + half]))
        with m.If(self.active[1]):
            for k in range(half):
                m.d.comb += out.data[k].eq(up_line.o.data[k])
            m.d.comb += [
                out.valid.eq(out_valid),
                out.first.eq(up_line.o.flags.first),
                out.last.eq(up_line.o.flags.last),
                out.index.eq(up_line.o.flags.index),
            ]
        with m.Else():
            m.d.comb += [out.valid.eq(inp.valid), out.first.eq(inp.first), out.last.eq(inp.last),
                         out.index.eq(inp.index),
                         *(out.data[k].eq(inp.data[k]) for k in range(half))]
        return m


class _Column(wiring.Component):
    """A column of ``lanes/2`` PEs running one FFT stage on lane pairs ``(l, l | 2**lane_bit)``.

    An input register then the PEs: latency ``COLUMN_LATENCY = 2 + PE_LATENCY`` beats: the
    input register (beside it, the twiddle address decoded from the incoming beat's index),
    then the operand register beside the twiddle ROM's read register (addressed by a
    register, the twiddle address, so the LUT ROMs start from flip-flops) and the weight
    words (block RAM read at the incoming beat's index beside the input register, then a
    fabric register). Inactive (``N`` too short to use it): the input register only.
    ``en`` holds ``1 + lanes/2`` copies of the pipeline enable: bit 0 moves the column's
    registers and memory ports, bit ``1 + n`` PE ``n``. ``active`` (the transforms in the
    columns use this one) and ``real`` come from registers of the array's, one per column,
    as each drives hundreds of multiplexers; ``active`` in as many copies as ``en``, bit 0
    for the flags, bit ``1 + n`` for PE ``n``'s output lanes (one copy of it was the 16-PE
    array's worst path at 8a07c6c with the static placer: 9.5 ns of routing). ``o_valid_next`` is the valid bit ``o`` will
    show after a cycle with ``en`` high (for the array's enable, a cycle ahead), and
    ``o_index_next`` its index (for the next exchange's switch). ``real`` has a copy per PE
    (its coefficient, mode and shift multiplexers; one copy for the column was the 16-PE
    array's worst path at 23af804: 9.2 ns of routing into a multiplier's operand).
    """

    def __init__(self, cfg, schedule, index):
        self._cfg = cfg
        self._sched = schedule
        self._index = index
        ports = {
            "en": In(self.enables(cfg)),
            "log2n": In(range(schedule.log2n_max + 1)),
            "active": In(self.enables(cfg)),
            "i": In(_beat(cfg)),
            "o": Out(_beat(cfg)),
            "o_valid_next": Out(1),
            "o_index_next": Out(_index_bits(cfg)),
        }
        if cfg.linear:
            ports.update({"real": In(cfg.lanes // 2), "w_en": In(1), "w": In(weight_beat(cfg))})
        super().__init__(ports)

    @staticmethod
    def always_active(schedule, index):
        """Column ``index`` runs a stage of every transform length."""
        return all(plan[index].active for plan in map(schedule.plan, schedule.log2n_range))

    @staticmethod
    def enables(cfg):
        """Copies of the pipeline enable a column takes: its registers', then one per PE."""
        return 1 + cfg.lanes // 2

    def elaborate(self, platform):
        m = Module()
        cfg, sched = self._cfg, self._sched
        col = sched.columns[self._index]
        plans = {log2n: sched.plan(log2n)[self._index] for log2n in sched.log2n_range}
        P, bit = sched.lanes, col.lane_bit
        pairs = [(l, l | 1 << bit) for l in range(P) if not l >> bit & 1]
        tb = cfg.twiddle_bits
        en = self.en[0]

        reg = Signal(_beat(cfg), name="in_reg")
        op = Signal(_beat(cfg), name="op_reg")
        with m.If(en):
            m.d.sync += [reg.eq(self.i), op.eq(reg)]

        # Twiddle ROM W_{2**(kmax+1)}**idx, one read port per PE, read beside the input register;
        # a word holds the PEs' twiddle coefficients (FFT-only three-multiplier PEs: fft_coefs).
        # The table-driven PEs (ButterflyPE.INDEXED) take the index itself: their "ROM" is a
        # register of the address.
        size = 1 << col.kmax
        table = column_twiddles(cfg, col.kmax)
        product = ButterflyPE.plan(cfg, table)
        indexed = product in ButterflyPE.INDEXED
        words = [(idx,) if indexed else fft_coefs(*w) if product == "three" else w
                 for idx, w in enumerate(table)]
        width = len(words[0])
        mask = (1 << tb) - 1
        twiddles = []
        if size == 1:
            twiddles = [tuple(Const(v, tb) for v in words[0])] * len(pairs)   # W = 1
        else:
            if not indexed:
                rom = memory.Memory(shape=unsigned(width * tb), depth=size,
                                    init=[sum((v & mask) << (k * tb) for k, v in enumerate(word))
                                          for word in words])
                m.submodules.rom = rom
            for n, (l0, _) in enumerate(pairs):
                # The address is decoded from the incoming beat's index and registered beside
                # the input register (``log2n`` holds while beats are in the columns), so the
                # ROM (LUTs, for the small ones) starts from a flip-flop.
                idx_next = Signal(col.kmax, name=f"tw_idx_next{n}")
                idx = Signal(col.kmax, name=f"tw_idx{n}")
                with m.Switch(self.log2n):
                    for log2n, plan in plans.items():
                        if not plan.active:
                            continue
                        with m.Case(log2n):
                            srcs = [Const(0, 1) if s is None else
                                    Const(l0 >> s[1] & 1, 1) if s[0] == "lane" else
                                    self.i.index[s[1]]
                                    for s in plan.twiddle_bits]
                            m.d.comb += idx_next.eq(Cat(*srcs))
                with m.If(en):
                    m.d.sync += idx.eq(idx_next)
                if indexed:
                    word = Signal(col.kmax, name=f"tw_word{n}")
                    with m.If(en):
                        m.d.sync += word.eq(idx)
                    twiddles.append((word,))
                    continue
                port = rom.read_port()
                m.d.comb += [port.addr.eq(idx), port.en.eq(en)]
                twiddles.append(tuple(port.data[k * tb:(k + 1) * tb].as_signed()
                                      for k in range(width)))

        # Real mode: each PE's weights at the address of the beat number; the column's shift
        # register, set by every write to the column.
        weights = []
        if cfg.linear:
            depth = max(cfg.n_max // sched.lanes, 2)
            real_shift = Signal(signed(cfg.shift_bits), init=1)
            with m.If(self.w_en):
                m.d.sync += real_shift.eq(self.w.shift)
            for n in range(len(pairs)):
                # Written only while the array holds no beat (a pending write holds the
                # input), so no read that meets a write is used.
                mem = block_ram(m, f"weights{n}", shape=unsigned(4 * tb), depth=depth)
                wp = mem.write_port()
                m.d.comb += [
                    wp.addr.eq(self.w.addr),
                    wp.data.eq(Cat(*(self.w.coef[k] for k in range(4)))),
                    wp.en.eq(self.w_en & (self.w.pe == n)),
                ]
                # Read a cycle early (at the incoming beat's index), so the word is registered
                # twice, beside the input register and beside the operand register: the second
                # register is the block RAM's output register on an ECP5 (rtl/ram.py), and the
                # real/FFT multiplexer into the multipliers follows a 0.96 ns clock-to-out,
                # not the 5.8 ns of the RAM's read.
                word = read(m, f"weights{n}", mem, addr=self.i.index, en=en, platform=platform,
                            writes=[wp], registers=2)
                weights.append([word[k * tb:(k + 1) * tb].as_signed() for k in range(4)])

        if self.always_active(sched, self._index):
            active_copies = Const(-1, len(self.active))
        else:
            active_copies = self.active
        active = active_copies[0]
        # Input register, PEs, and the flags beside them.
        pe_out = [None] * P
        for n, (l0, l1) in enumerate(pairs):
            pe = ButterflyPE(cfg, twiddles=table)
            m.submodules[f"pe{n}"] = EnableInserter(self.en[1 + n])(pe)
            m.d.comb += [
                pe.i.valid.eq(1),
                pe.i.payload.x0.eq(op.data[l0]),
                pe.i.payload.x1.eq(op.data[l1]),
                pe.o.ready.eq(1),
            ]
            if cfg.linear:
                a, b, c, d = weights[n]
                wr, wi = twiddles[n]
                real = self.real[n]
                m.d.comb += [
                    pe.i.payload.coef[0].eq(Mux(real, a, wr)),
                    pe.i.payload.coef[1].eq(Mux(real, b, wi)),
                    pe.i.payload.coef[2].eq(c),
                    pe.i.payload.coef[3].eq(d),
                    pe.i.payload.mode.eq(Mux(real, Mode.REAL, Mode.FFT)),
                    pe.i.payload.shift.eq(Mux(real, real_shift, 1)),
                ]
            else:
                m.d.comb += [
                    *(pe.i.payload.coef[k].eq(v) for k, v in enumerate(twiddles[n])),
                    pe.i.payload.mode.eq(Mode.FFT),
                    pe.i.payload.shift.eq(1),
                ]
            pe_out[l0], pe_out[l1] = pe.o.payload.y0, pe.o.payload.y1
        flags = [Signal(_flags(cfg), name=f"flags{k}") for k in range(cfg.PE_LATENCY)]
        with m.If(en):
            m.d.sync += flags[0].eq(Cat(op.valid & active, op.first, op.last, op.index))
            for k in range(1, len(flags)):
                m.d.sync += flags[k].eq(flags[k - 1])

        out = self.o
        before_out = flags[-2].valid if len(flags) > 1 else op.valid & active
        before_index = flags[-2].index if len(flags) > 1 else op.index
        m.d.comb += [self.o_valid_next.eq(Mux(active, before_out, self.i.valid)),
                     self.o_index_next.eq(Mux(active, before_index, self.i.index))]
        for n, pair in enumerate(pairs):
            for lane in pair:
                m.d.comb += out.data[lane].eq(Mux(active_copies[1 + n], pe_out[lane], reg.data[lane]))
        with m.If(active):
            m.d.comb += [
                out.valid.eq(flags[-1].valid),
                out.first.eq(flags[-1].first),
                out.last.eq(flags[-1].last),
                out.index.eq(flags[-1].index),
            ]
        with m.Else():
            m.d.comb += [out.valid.eq(reg.valid), out.first.eq(reg.first), out.last.eq(reg.last),
                         out.index.eq(reg.index)]
        return m


class ButterflyArray(wiring.Component):
    """The streaming FFT array (module docstring): ``lanes`` samples per cycle, any ``N``.

    Parameters
    ----------
    config : ButterflyConfig
        ``width``, ``twiddle_bits``, ``n_max`` and ``lanes`` (≥ 2) are used; ``pes`` is not
        (this streaming array always has :attr:`pes` = ``lanes/2 · log2(n_max)``).
    input_order, output_order : {"natural", "columns"}
        ``"columns"``: chained to another array column to column, without the input
        bit-reversal buffer or without the reorder buffer (module docstring).

    Attributes
    ----------
    i : In(stream) of :func:`input_beat`
        Samples in natural order, ``lanes`` per beat; ``log2n`` and ``mode`` on a transform's
        first beat.
    o : Out(stream) of :func:`output_beat`
        The transform in natural order, ``lanes`` bins per beat, ``last`` on its final beat:
        the model's ``fft(re, im, cfg)`` (fixed scaling, ``scale_log2 = log2n``), or in real
        mode ``butterfly(re, T, cfg, scaling=shifts)`` with the written weights and shifts.
        With ``output_order="columns"``: of :func:`input_beat`, in the last column's order.
    hold : In(1)
        Only with ``linear=1`` and ``output_order="columns"``: hold the input at the next
        transform boundary (a chain's pending weight write).
    w : In(stream) of :func:`weight_beat`
        Only with ``linear=1``: butterfly-linear weights (ready only between transforms,
        with the array empty).
    error : Out(1)
        Sticky: a ``log2n`` out of range, ``last`` where the count disagrees, or real mode
        asked of an array without it.
    schedule : ArraySchedule
    pes : int
        Butterfly PEs: ``lanes/2 · log2(n_max)``.
    multipliers : int
        Real multipliers: the PEs' (module docstring, ``ButterflyConfig.array_multipliers``).
    """

    ORDERS = ("natural", "columns")
    #: copies of the pipeline enable outside the columns and exchanges: control, input register
    CORE_ENABLES = 2

    def __init__(self, config=ButterflyConfig(), *, input_order="natural",
                 output_order="natural"):
        if not isinstance(config, ButterflyConfig):
            raise TypeError(f"config must be a ButterflyConfig, not {config!r}")
        if config.lanes < 2:
            raise ValueError(f"lanes={config.lanes} is out of range for the array: expected a "
                             f"power of two ≥ 2 (a column pairs two lanes of a beat)")
        for name, order in (("input_order", input_order), ("output_order", output_order)):
            if order not in self.ORDERS:
                raise ValueError(f"{name}={order!r}: expected one of {self.ORDERS}")
        if input_order == "columns" and not config.linear:
            raise ValueError("input_order='columns' takes butterfly-linear transforms: "
                             "it needs linear=1")
        self.config = config
        self.input_order, self.output_order = input_order, output_order
        self.schedule = ArraySchedule(config.lanes, config.n_max,
                                      chained=input_order == "columns")
        self.pes = config.lanes // 2 * config.stages_max
        self.multipliers = config.lanes // 2 * sum(
            ButterflyPE.MULTIPLIERS[ButterflyPE.plan(config, column_twiddles(config, col.kmax))]
            for col in self.schedule.columns)
        out_beat = output_beat(config) if output_order == "natural" else input_beat(config)
        ports = {
            "i": In(stream.Signature(input_beat(config))),
            "o": Out(stream.Signature(out_beat)),
            "error": Out(1),
        }
        if config.linear:
            ports["w"] = In(stream.Signature(weight_beat(config)))
            if output_order == "columns":
                ports["hold"] = In(1)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        cfg, sched = self.config, self.schedule
        P, p, lmax = cfg.lanes, sched.p, sched.log2n_max

        # -- the pipeline enable: registered copies, each moving its share of the array ------
        # (see "Flow control" in the module docstring); ``en_next`` is the enable next cycle
        # if the array stalls (bit 0) or moves (bit 1) this cycle, computed at the end.
        en_next = Signal(2)
        n_copies = (self.CORE_ENABLES + len(sched.columns) * _Column.enables(cfg)
                    + sum(_Exchange.ENABLES for col in sched.columns if col.delay))
        copies = iter(enable_copies(m, "en", n_copies, if_enabled=en_next[1],
                                    if_stalled=en_next[0]))

        def enables(count):
            return Cat(*(next(copies) for _ in range(count)))

        en, en_head = (next(copies) for _ in range(self.CORE_ENABLES))

        # -- the columns and exchanges, in order ---------------------------------------------
        cur_log2n = Signal(range(lmax + 1), init=p)     # the transforms in the columns
        cur_real = Signal()                             # … and their mode (1: real)
        new_length = Signal()                           # a transform of another N or mode enters
        slot_log2n = Signal(range(lmax + 1), name="slot_log2n")   # … with this length
        slot_real = Signal(name="slot_real")                      # … and mode
        head = Signal(_beat(cfg), name="head")          # the input register
        head_index_next = Signal.like(head.index)       # head.index after an enabled cycle

        # A new length's settings load as its first beat enters the input register
        # (``new_length``, from the input slot's head entry) in the first column and the
        # exchanges before and after it, which act on that beat in the next cycle; every later column
        # and exchange loads them a cycle later (``new_length_late``, from ``cur_log2n``),
        # still before the beat reaches it (a column holds it a cycle at least, and an
        # exchange's switch is computed a cycle before its beat arrives). So no load spans
        # the array from the slot's LUT RAM (the 16-PE array's worst path at 8c4db42).
        new_length_late = Signal()
        m.d.sync += new_length_late.eq(new_length)

        def length_change(late):
            """The load enable, the length and the mode for settings loaded early or ``late``."""
            return (new_length_late, cur_log2n, cur_real) if late else (new_length, slot_log2n, slot_real)

        def by_length(name, value_of, log2n, shape=1):
            """``value_of(n)`` for the length ``log2n`` holds, decoded."""
            value = Signal(shape, name=f"{name}_next")
            with m.Switch(log2n):
                for n in sched.log2n_range:
                    with m.Case(n):
                        m.d.comb += value.eq(value_of(n))
            return value

        def length_flag(name, flag_of, copies=1, *, late):
            """``copies`` registers holding ``flag_of(log2n)`` of the transforms in the columns
            (so each column's multiplexers have flip-flops of their own)."""
            load, log2n, _ = length_change(late)
            value = by_length(name, lambda n: int(flag_of(n)), log2n)
            return Cat(*held_copies(m, name, copies, load=load, value=value,
                                    init=int(flag_of(p))))

        if cfg.linear:
            # the accepted weight beat, written into its column a cycle later
            w_accept = self.w.valid & self.w.ready
            w_reg = Signal(weight_beat(cfg), name="w_reg")
            m.d.sync += w_reg.eq(self.w.payload)

        beat, index_next = head, head_index_next
        for c, col in enumerate(sched.columns):
            if col.delay:
                variable = col.kind != "time"
                xch = _Exchange(cfg, col.delay, variable=variable)
                m.submodules[f"xch{c}"] = xch
                m.d.comb += [xch.en.eq(enables(_Exchange.ENABLES)), xch.i.eq(beat),
                             xch.i_index_next.eq(index_next)]
                late = c >= 2
                load, log2n, _ = length_change(late)
                if variable:
                    # the time slot of the plan's exchange for the length (2**slot beats), a
                    # register loaded with the length
                    def delay_of(log2n, c=c):
                        slot = sched.plan(log2n)[c].exchange
                        return 0 if slot is None else 1 << slot
                    delay_next = by_length(f"xch{c}_delay", delay_of, log2n, xch.delay.shape())
                    delay = Signal.like(xch.delay, name=f"xch{c}_delay", init=delay_of(p))
                    with m.If(load):
                        m.d.sync += delay.eq(delay_next)
                    m.d.comb += [xch.clear.eq(load), xch.delay.eq(delay)]
                    m.d.comb += xch.active.eq(length_flag(
                        f"xch{c}_active", lambda n, c=c: sched.plan(n)[c].exchange is not None, 2,
                        late=late))
                else:
                    m.d.comb += xch.active.eq(length_flag(f"xch{c}_active",
                                                          lambda n, c=c: n >= lmax - c, 2, late=late))
                beat = xch.o
            column = _Column(cfg, sched, c)
            m.submodules[f"col{c}"] = column
            m.d.comb += [column.en.eq(enables(_Column.enables(cfg))), column.log2n.eq(cur_log2n),
                         column.i.eq(beat)]
            index_next = column.o_index_next
            if not _Column.always_active(sched, c):
                m.d.comb += column.active.eq(length_flag(
                    f"col{c}_active", lambda n, c=c: sched.plan(n)[c].active, len(column.active),
                    late=c >= 1))
            if cfg.linear:
                load, _, real = length_change(c >= 1)
                col_real = held_copies(m, f"col{c}_real", len(column.real), load=load, value=real)
                w_en = Signal(name=f"col{c}_w_en")
                m.d.sync += w_en.eq(w_accept & (self.w.payload.column == c))
                m.d.comb += [column.real.eq(Cat(*col_real)), column.w_en.eq(w_en), column.w.eq(w_reg)]
            beat = column.o
        tail, tail_valid_next = beat, column.o_valid_next

        # -- the reorder buffer, or the last column's beats into a two-beat FIFO -------------
        # ``tail_free_next``: next cycle, the last column's beat can leave, if this cycle's beat
        # (if any) does not fill a place (bit 0) or does (bit 1).
        tail_free_next = Signal(2)
        fills = Signal()                                # the tail's beat would fill a place
        if self.output_order == "natural":
            m.submodules.reorder = rob = ReorderBuffer(cfg, sched, write_register=True)
            wiring.connect(m, wiring.flipped(self.o), rob.o)
            m.d.comb += [
                rob.w_en.eq(en & tail.valid),
                rob.w.data.eq(tail.data),
                rob.w.last.eq(tail.last),
                rob.w_log2n.eq(cur_log2n),
                tail_free_next.eq(rob.w_ready_next),
                fills.eq(tail.last),
            ]
        else:
            out_beat = input_beat(cfg)
            m.submodules.out_fifo = fifo = SyncFIFO(width=out_beat.size, depth=2)
            leaving = Signal(out_beat)
            m.d.comb += [
                leaving.data.eq(tail.data),
                leaving.log2n.eq(cur_log2n),
                leaving.mode.eq(Mux(cur_real, Mode.REAL, Mode.FFT)),
                leaving.last.eq(tail.last),
                fifo.w_data.eq(leaving),
                fifo.w_en.eq(en & tail.valid),
                self.o.valid.eq(fifo.r_rdy),
                self.o.payload.eq(fifo.r_data),
                fifo.r_en.eq(self.o.ready),
                fills.eq(1),
            ]
            kept = fifo.level - (fifo.r_rdy & self.o.ready)
            m.d.comb += tail_free_next.eq(Cat(kept < 2, kept < 1))

        # -- the front: frames as the user sends them ------------------------------------------
        # Counts each transform's beats (``last`` and ``log2n`` are checked here), sends FFT
        # transforms straight to the input slot and real ones through the input bit-reversal
        # buffer, and holds the input between transforms while weights are being written.
        inp = self.i.payload
        beat_range = range(max(cfg.n_max // P, 2))

        def first_end(log2n_value, name):
            value = Signal(beat_range, name=name)
            with m.Switch(log2n_value):
                for n in sched.log2n_range:
                    with m.Case(n):
                        m.d.comb += value.eq((1 << (n - p)) - 1)
            return value

        f_beat = Signal(beat_range)                 # beat number in the user's transform
        f_end = Signal(beat_range)                  # its last beat number
        f_log2n_reg = Signal(range(lmax + 1), init=p)
        f_real_reg = Signal()
        f_boundary = Signal(init=1)                 # f_beat == 0, as a register
        log2n_in = Signal(range(lmax + 1))
        bad_log2n = Signal()
        m.d.comb += [
            bad_log2n.eq((inp.log2n < p) | (inp.log2n > lmax)),
            log2n_in.eq(Mux(inp.log2n < p, p, Mux(inp.log2n > lmax, lmax, inp.log2n))),
        ]
        f_log2n = Signal(range(lmax + 1))
        f_real = Signal()
        f_ends = Signal()
        in_end = first_end(log2n_in, "in_end")
        real_in = (inp.mode == Mode.REAL) if cfg.linear else Const(0, 1)
        m.d.comb += [
            f_log2n.eq(Mux(f_boundary, log2n_in, f_log2n_reg)),
            f_real.eq(Mux(f_boundary, real_in, f_real_reg)),
            f_ends.eq(Mux(f_boundary, log2n_in == p, f_beat == f_end)),
        ]

        # The slot's source: the bit-reversal buffer's output while it has one, else the front.
        src_valid = Signal()
        src_ready = Signal()
        src_data = Signal(data.ArrayLayout(complex_layout(cfg.width), P))
        src_log2n = Signal(range(lmax + 1))
        src_real = Signal()
        slot_valid = Signal()                       # the input slot has the columns' next beat
        in_flight = Signal(range(2 * cfg.n_max // P + (cfg.COLUMN_LATENCY + 2) * lmax + 9))
        busy = Signal()                             # in_flight != 0, as a register
        empty = ~slot_valid & ~busy                 # nothing between the slot and the tail
        hold = Signal()                             # weights waiting: no new transform
        if cfg.linear:
            m.d.comb += hold.eq(self.w.valid | (self.hold if self.output_order == "columns" else 0))
        if self.input_order == "columns":
            # already in the columns' order: straight in, every transform real
            held = f_boundary & hold
            m.d.comb += [
                self.w.ready.eq(f_boundary & empty),
                src_valid.eq(self.i.valid & ~held),
                src_data.eq(inp.data),
                src_log2n.eq(f_log2n),
                src_real.eq(1),
                self.i.ready.eq(~held & src_ready),
            ]
        elif cfg.linear:
            m.submodules.bitrev = rev = ReorderBuffer(cfg, BitReverseSchedule(P, cfg.n_max))
            m.d.comb += [
                self.w.ready.eq(f_boundary & rev.idle & empty),
                rev.w_en.eq(self.i.valid & f_real & rev.w_ready & ~(f_boundary & hold)),
                rev.w.data.eq(inp.data),
                rev.w.last.eq(f_ends),
                rev.w_log2n.eq(f_log2n),
                rev.o.ready.eq(src_ready),
                src_valid.eq(rev.o.valid | (self.i.valid & ~f_real & rev.idle
                                            & ~(f_boundary & hold))),
                src_data.eq(Mux(rev.o.valid, rev.o.payload.data, inp.data)),
                src_log2n.eq(Mux(rev.o.valid, rev.o_log2n, f_log2n)),
                src_real.eq(rev.o.valid),
                self.i.ready.eq(~(f_boundary & hold)
                                & Mux(f_real, rev.w_ready, src_ready & rev.idle)),
            ]
        else:
            m.d.comb += [
                src_valid.eq(self.i.valid),
                src_data.eq(inp.data),
                src_log2n.eq(f_log2n),
                self.i.ready.eq(src_ready),
            ]
        f_accept = self.i.valid & self.i.ready
        with m.If(f_accept):
            with m.If(f_boundary):
                m.d.sync += [f_log2n_reg.eq(log2n_in), f_real_reg.eq(real_in),
                             f_end.eq(in_end)]
            m.d.sync += [f_beat.eq(Mux(f_ends, 0, f_beat + 1)), f_boundary.eq(f_ends)]
            if not cfg.linear:
                bad_mode = inp.mode == Mode.REAL
            elif self.input_order == "columns":
                bad_mode = inp.mode != Mode.REAL
            else:
                bad_mode = Const(0, 1)
            with m.If((inp.last != f_ends) | (f_boundary & (bad_log2n | bad_mode))):
                m.d.sync += self.error.eq(1)

        # -- the input slot and the core: frame count, length/mode changes ---------------------
        # The slot is a three-beat FIFO, so its ready is a register (``level != 3``) and neither
        # the front nor the bit-reversal buffer waits on this cycle's pipeline enable.
        # Each entry also says whether its length or mode differs from the entry before it:
        # at a transform boundary that is "differs from the transforms in the columns".
        entry = data.StructLayout({"data": src_data.shape(), "log2n": src_log2n.shape(),
                                   "real": 1, "changes": 1})
        m.submodules.slot = slot = SyncFIFO(width=entry.size, depth=3)
        incoming = Signal(entry)
        head_entry = data.View(entry, slot.r_data)
        slot_data = head_entry.data
        pushed_log2n = Signal(range(lmax + 1), init=p)  # of the last beat into the slot
        pushed_real = Signal()
        m.d.comb += [
            incoming.data.eq(src_data), incoming.log2n.eq(src_log2n), incoming.real.eq(src_real),
            incoming.changes.eq((src_log2n != pushed_log2n) | (src_real != pushed_real)),
            slot.w_data.eq(incoming), slot.w_en.eq(src_valid), src_ready.eq(slot.w_rdy),
            slot_valid.eq(slot.r_rdy), slot_log2n.eq(head_entry.log2n),
            slot_real.eq(head_entry.real),
        ]
        with m.If(src_valid & slot.w_rdy):
            m.d.sync += [pushed_log2n.eq(src_log2n), pushed_real.eq(src_real)]
        # The core's state, as registers the enable and the accept logic read directly.
        in_beat = Signal(beat_range)               # beat number in the transform
        frame_end = Signal(beat_range)             # its last beat number
        boundary = Signal(init=1)                  # in_beat == 0
        changes = head_entry.changes
        drain = Signal()
        m.d.comb += drain.eq(boundary & changes & busy)
        accept = Signal()
        m.d.comb += [
            accept.eq(en & slot_valid & ~drain),
            slot.r_en.eq(accept),
            new_length.eq(accept & boundary & changes),
        ]
        ends = Signal()
        slot_end = first_end(slot_log2n, "slot_end")
        m.d.comb += ends.eq(Mux(boundary, slot_log2n == p, in_beat == frame_end))
        m.d.comb += head_index_next.eq(Mux(accept & boundary, 0, head.index + 1))
        with m.If(en_head):
            m.d.sync += head.data.eq(slot_data)
        with m.If(en):
            m.d.sync += [
                head.valid.eq(accept),
                head.first.eq(accept & boundary),
                head.last.eq(accept & ends),
                head.index.eq(head_index_next),
            ]
        with m.If(accept):
            with m.If(boundary):
                m.d.sync += [cur_log2n.eq(slot_log2n), cur_real.eq(slot_real),
                             frame_end.eq(slot_end)]
            m.d.sync += [in_beat.eq(Mux(ends, 0, in_beat + 1)), boundary.eq(ends)]
        leave = en & tail.valid
        with m.If(accept & ~leave):
            m.d.sync += [in_flight.eq(in_flight + 1), busy.eq(1)]
        with m.Elif(leave & ~accept):
            m.d.sync += [in_flight.eq(in_flight - 1), busy.eq(in_flight != 1)]

        # -- the enable a cycle ahead: room at the tail, and a beat in the slot or a boundary --
        # Only the beats in the slot now count, not one entering it: so the input's valid
        # (and the bit-reversal buffer's) reaches no enable copy (at 7618cd6 the 16-PE array's
        # worst path ran from the bit-reversal buffer's output valid into the copies).
        kept = slot.level

        def enable_after(moves):
            take = slot_valid & ~drain if moves else Const(0, 1)
            slot_next = kept > take
            boundary_next = Mux(take, ends, boundary)
            tail_next = tail_valid_next if moves else tail.valid
            free_next = Mux(tail.valid & fills, tail_free_next[1], tail_free_next[0]) if moves \
                else tail_free_next[0]
            return (~tail_next | free_next) & (slot_next | boundary_next)

        m.d.comb += en_next.eq(Cat(enable_after(False), enable_after(True)))
        return m
