"""FNet token mixing on two chained FFT arrays: ``Re(FFT_L(FFT_D(x)))`` as one streamed operation.

Dataflow
--------
``x`` (``L`` tokens × ``D`` features, real, row-major, ``lanes`` features per beat) streams
into a first :class:`~.array.ButterflyArray` running ``D``-point FFTs on the rows. Its
complex rows go into a **transpose buffer** (two frames, ping-pong, ``lanes`` banks), which
reads them out column by column into a second array running ``L``-point FFTs on the
columns; the real parts leave. Both arrays run at full rate, so a frame of ``L·D`` samples
takes ``L·D/lanes`` cycles in steady state, nothing goes to off-chip memory between the two
passes, and both passes are exactly :func:`attnforge.sim.butterfly.fft` with the
``"fixed"`` policy: ``y · 2**(log2 L + log2 D)`` approximates ``numpy.fft.fft2(x).real``
(:func:`attnforge.sim.butterfly.fnet`, bit for bit).

Output order: column-major (feature ``d``'s ``L`` tokens, ``lanes`` per beat, then
feature ``d+1``): the second pass's transforms, as they leave its reorder buffer.

Transpose buffer: sample ``(r, c)`` of a frame lives in bank ``(r + c) mod lanes`` at
address ``r·D/lanes + c div lanes`` (plus the half), so a written beat (one row, ``lanes``
consecutive columns) and a read beat (one column, ``lanes`` consecutive rows) touch every
bank once.

Frames: ``log2l`` and ``log2d`` on a frame's first beat (``lanes ≤ L, D ≤ n_max``,
``L·D ≤ frame_max``; out of range: clamped and ``error`` set); ``last`` on its final beat
(checked against the count: a mismatch sets ``error``, the count wins).
"""

import dataclasses

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...configs.butterfly import ButterflyConfig
from ..ram import block_ram, read
from ..stream import vector_beat
from .array import ButterflyArray
from .pe import Mode, complex_layout

__all__ = ["fnet_input_beat", "fnet_output_beat", "FNet"]


def fnet_input_beat(cfg):
    """``lanes`` real features of one token; ``log2l``, ``log2d`` (first beat); ``last``."""
    return vector_beat(cfg.lanes, signed(cfg.width), log2l=range(cfg.stages_max + 1),
                       log2d=range(cfg.stages_max + 1))


def fnet_output_beat(cfg):
    """``lanes`` real outputs of one feature (consecutive tokens); ``last`` ends the frame."""
    return vector_beat(cfg.lanes, signed(cfg.width))


class _Queue(wiring.Component):
    """A small FIFO of frame parameters (registers): ``push``/``pop`` with ``w``/``r``."""

    def __init__(self, shape, depth):
        self._depth = depth
        super().__init__({"w": In(shape), "push": In(1), "r": Out(shape), "pop": In(1),
                          "full": Out(1), "empty": Out(1)})

    def elaborate(self, platform):
        m = Module()
        n = self._depth
        slots = Array(Signal.like(self.w, name=f"slot{k}") for k in range(n))
        head = Signal(range(n))
        tail = Signal(range(n))
        count = Signal(range(n + 1))
        m.d.comb += [self.r.eq(slots[head]), self.full.eq(count == n),
                     self.empty.eq(count == 0)]
        with m.If(self.push):
            m.d.sync += [slots[tail].eq(self.w), tail.eq(Mux(tail == n - 1, 0, tail + 1))]
        with m.If(self.pop):
            m.d.sync += head.eq(Mux(head == n - 1, 0, head + 1))
        m.d.sync += count.eq(count + self.push - self.pop)
        return m


class FNet(wiring.Component):
    """FNet mixing on two FFT arrays and a transpose buffer (module docstring).

    Parameters
    ----------
    config : ButterflyConfig
        ``width``, ``twiddle_bits``, ``n_max``, ``lanes`` (≥ 2) and ``frame_max``; the
        arrays are built FFT-only (``linear=0``).

    Attributes
    ----------
    i : In(stream) of :func:`fnet_input_beat`
    o : Out(stream) of :func:`fnet_output_beat`
    error : Out(1)
        Sticky: a frame size out of range or a misplaced ``last``.
    pes, multipliers : int
        Of both arrays together.
    """

    def __init__(self, config=ButterflyConfig()):
        if not isinstance(config, ButterflyConfig):
            raise TypeError(f"config must be a ButterflyConfig, not {config!r}")
        self.config = config
        self._array_cfg = dataclasses.replace(config, linear=0)
        self.rows = ButterflyArray(self._array_cfg)
        self.cols = ButterflyArray(self._array_cfg)
        self.pes = self.rows.pes + self.cols.pes
        self.multipliers = self.rows.multipliers + self.cols.multipliers
        super().__init__({
            "i": In(stream.Signature(fnet_input_beat(config))),
            "o": Out(stream.Signature(fnet_output_beat(config))),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        P, p, lmax = cfg.lanes, cfg.lanes.bit_length() - 1, cfg.stages_max
        fbits = cfg.frame_max.bit_length() - 1 - p         # address bits of one frame per bank

        def pow2(exponent):
            """``2**exponent`` for an unsigned run-time exponent (wide enough for a frame)."""
            return Const(1, fbits + lmax + 2) << exponent

        def minus_p(value):
            return (value - p).as_unsigned()[:len(value)]
        m.submodules.rows = rows = self.rows
        m.submodules.cols = cols = self.cols
        sizes = data.StructLayout({"log2l": range(lmax + 1), "log2d": range(lmax + 1)})
        m.submodules.q_write = q_write = _Queue(sizes, 4)  # frames entering -> transpose writer
        m.submodules.q_out = q_out = _Queue(sizes, 4)      # frames read out -> output counter

        # -- input: frame sizes, row FFTs ------------------------------------------------------
        inp = self.i.payload
        in_first = Signal(init=1)                         # next beat starts a frame
        in_count = Signal(fbits + 1)                      # beat number in the frame
        cur = Signal(sizes)
        log2l = Signal(range(lmax + 1))
        log2d = Signal(range(lmax + 1))
        bad = Signal()

        def clamp(v):
            return Mux(v < p, p, Mux(v > lmax, lmax, v))
        raw_l, raw_d = clamp(inp.log2l), clamp(inp.log2d)
        fm = cfg.frame_max.bit_length() - 1
        too_big = raw_l + raw_d > fm
        m.d.comb += [
            bad.eq((inp.log2l < p) | (inp.log2l > lmax) | (inp.log2d < p) | (inp.log2d > lmax)
                   | too_big),
            # an oversized frame becomes lanes × min(frame_max/lanes, n_max)
            log2d.eq(Mux(in_first, Mux(too_big, min(fm - p, lmax), raw_d), cur.log2d)),
            log2l.eq(Mux(in_first, Mux(too_big, p, raw_l), cur.log2l)),
        ]
        row_beats = Signal(fbits + 1)
        m.d.comb += row_beats.eq(pow2(minus_p(log2d)))
        frame_end = in_count == pow2(minus_p(log2l + log2d)) - 1
        row_end = (in_count & (row_beats - 1)) == row_beats - 1
        go = Signal()
        m.d.comb += [
            go.eq(self.i.valid & (~in_first | ~q_write.full)),
            rows.i.valid.eq(go),
            self.i.ready.eq(rows.i.ready & (~in_first | ~q_write.full)),
            rows.i.payload.log2n.eq(log2d),
            rows.i.payload.mode.eq(Mode.FFT),
            rows.i.payload.last.eq(row_end),
            *(rows.i.payload.data[k].re.eq(inp.data[k]) for k in range(P)),
            *(rows.i.payload.data[k].im.eq(0) for k in range(P)),
            q_write.w.log2l.eq(log2l), q_write.w.log2d.eq(log2d),
        ]
        accept = self.i.valid & self.i.ready
        m.d.comb += q_write.push.eq(accept & in_first)
        with m.If(accept):
            with m.If(in_first):
                m.d.sync += [cur.log2l.eq(log2l), cur.log2d.eq(log2d)]
            m.d.sync += [in_first.eq(frame_end), in_count.eq(Mux(frame_end, 0, in_count + 1))]
            with m.If((inp.last != frame_end) | (in_first & bad)):
                m.d.sync += self.error.eq(1)
        with m.If(rows.error | cols.error):
            m.d.sync += self.error.eq(1)

        # -- transpose buffer: lanes banks × two frames ----------------------------------------
        depth = 2 << fbits
        # A frame is written only while its half is not full and read only while it is, so
        # no read that meets a write is used.
        banks = []
        for b in range(P):
            mem = block_ram(m, f"bank{b}", shape=complex_layout(cfg.width), depth=depth)
            banks.append((mem, mem.write_port()))
        full = [Signal(name="full0"), Signal(name="full1")]
        half_sizes = [Signal(sizes, name=f"sizes{h}") for h in range(2)]

        # write side: rows in natural order from the first array
        w_half = Signal()
        w_row = Signal(lmax + 1)
        w_col = Signal(lmax + 1)                          # column of the beat's lane 0 / P
        wsz = q_write.r
        m.d.comb += rows.o.ready.eq(~Array(full)[w_half] & ~q_write.empty)
        w_en = rows.o.valid & rows.o.ready
        w_row_end = w_col == pow2(minus_p(wsz.log2d)) - 1
        w_frame_end = w_row_end & (w_row == pow2(wsz.log2l) - 1)
        w_addr = Signal(fbits)
        m.d.comb += w_addr.eq((w_row << minus_p(wsz.log2d)) | w_col)
        lanes_in = Array(rows.o.payload.data[k] for k in range(P))
        for b, (_, wp) in enumerate(banks):
            # bank b holds column lane λ with (λ + row) mod P = b
            m.d.comb += [
                wp.addr.eq(Cat(w_addr, w_half)),
                wp.data.eq(lanes_in[(b - w_row)[:p] if p else 0]),
                wp.en.eq(w_en),
            ]
        with m.If(w_en):
            m.d.sync += [w_col.eq(Mux(w_row_end, 0, w_col + 1)),
                         w_row.eq(Mux(w_row_end, Mux(w_frame_end, 0, w_row + 1), w_row))]
            with m.If(w_frame_end):
                m.d.sync += w_half.eq(~w_half)
                for h in range(2):
                    with m.If(w_half == h):
                        m.d.sync += [full[h].eq(1), half_sizes[h].eq(wsz)]
        m.d.comb += q_write.pop.eq(w_en & w_frame_end)

        # read side: columns, lanes consecutive rows per beat, into the second array
        r_half = Signal()
        r_col = Signal(lmax + 1)
        r_blk = Signal(lmax + 1)                          # row block: rows r_blk·P …
        rsz = Array(half_sizes)[r_half]
        advance = ~cols.i.valid | cols.i.ready
        issue = advance & Array(full)[r_half] & (~(r_col == 0) | ~(r_blk == 0) | ~q_out.full)
        r_col_end = r_blk == pow2(minus_p(rsz.log2l)) - 1
        r_frame_end = r_col_end & (r_col == pow2(rsz.log2d) - 1)
        read_data = []
        for b, (mem, wp) in enumerate(banks):
            lane = (b - r_col)[:p] if p else 0             # the output lane bank b serves
            row = (r_blk << p) | lane
            addr = Cat(((row << minus_p(rsz.log2d)) | (r_col >> p))[:fbits], r_half)
            read_data.append(read(m, f"bank{b}", mem, addr=addr, en=issue, platform=platform,
                                  writes=[wp]))
        read_data = Array(read_data)
        sel = Signal(p)                                   # output lane l reads bank (c + l) mod P
        r_last = Signal()
        r_log2l = Signal(range(lmax + 1))
        with m.If(advance):
            m.d.sync += cols.i.valid.eq(issue)
        with m.If(issue):
            m.d.sync += [sel.eq(r_col[:p]), r_last.eq(r_col_end), r_log2l.eq(rsz.log2l)]
            with m.If(r_col_end):
                m.d.sync += [r_blk.eq(0), r_col.eq(Mux(r_frame_end, 0, r_col + 1))]
            with m.Else():
                m.d.sync += r_blk.eq(r_blk + 1)
            with m.If(r_frame_end):
                m.d.sync += r_half.eq(~r_half)
                for h in range(2):
                    with m.If(r_half == h):
                        m.d.sync += full[h].eq(0)
        m.d.comb += [q_out.push.eq(issue & (r_col == 0) & (r_blk == 0)),
                     q_out.w.eq(rsz)]
        m.d.comb += [
            *(cols.i.payload.data[k].eq(read_data[(sel + k)[:p] if p else 0]) for k in range(P)),
            cols.i.payload.log2n.eq(r_log2l),
            cols.i.payload.mode.eq(Mode.FFT),
            cols.i.payload.last.eq(r_last),
        ]

        # -- output: real parts, ``last`` at the frame's end ------------------------------------
        o_count = Signal(fbits + 1)
        osz = q_out.r
        o_end = o_count == pow2(minus_p(osz.log2l + osz.log2d)) - 1
        m.d.comb += [
            self.o.valid.eq(cols.o.valid),
            cols.o.ready.eq(self.o.ready),
            *(self.o.payload.data[k].eq(cols.o.payload.data[k].re) for k in range(P)),
            self.o.payload.last.eq(o_end),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += o_count.eq(Mux(o_end, 0, o_count + 1))
        m.d.comb += q_out.pop.eq(self.o.valid & self.o.ready & o_end)
        return m
