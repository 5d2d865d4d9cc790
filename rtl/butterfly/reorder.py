"""The FFT array's output reorder buffer: transforms in, natural order out, lanes per cycle.

The last column of the array leaves each transform in the order of the schedule's final
slot map (:meth:`.schedule.ArraySchedule.final_map`, a bit permutation of the natural
frequency order, bit reversal among it). The buffer holds two transforms (ping-pong), each
in ``lanes`` banks of ``n_max / lanes`` words, so one is written while the other is read;
three (a ring) with a write register, whose last beat lands a cycle late, so that the
transform being read out still frees its region before the writer needs it.

Conflict-free banks: a beat written at beat number ``T`` puts its lane ``λ`` into bank
``λ ^ h(T)`` at address ``T`` (``h``: :meth:`.schedule.ArraySchedule.reorder_map`), so
both a written beat and a read beat (``lanes`` consecutive frequencies) touch every bank
exactly once. A read beat computes every bank's address from its beat number, reads all
banks at once, and a ``lanes``-way multiplexer per output lane picks its bank.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...configs.butterfly import ButterflyConfig
from ..pipeline import held_copies, stage
from ..ram import block_ram, read
from ..stream import vector_beat
from .pe import complex_layout

__all__ = ["output_beat", "ReorderBuffer"]


def output_beat(cfg):
    """``lanes`` complex samples of a transform in natural order; ``last`` on its final beat."""
    return vector_beat(cfg.lanes, complex_layout(cfg.width))


class ReorderBuffer(wiring.Component):
    """Two (or three) transforms of ``lanes`` banks: written in slot order, read in natural order.

    Parameters
    ----------
    config : ButterflyConfig
    schedule : ArraySchedule
        The array's schedule (its final slot map for every ``log2 N``).
    write_register : bool
        Rotate each written beat into a register and write the banks from it a cycle later
        (so the lane multiplexers, which take every lane to every bank, end in flip-flops
        and not at block RAMs spread over the device: the 1024-point 8-lane array's worst
        path); a transform's region is then full, and its read out starts, a cycle later,
        and the buffer has three regions, so the writer still never waits for the reader
        when the output does not stall (``3·n_max`` samples in place of ``2·n_max``).

    Attributes
    ----------
    w_en : In(1)
        Write the beat ``w`` this cycle (only when ``w_ready``).
    w : In(struct)
        ``data`` (``lanes`` complex samples in the final slot order) and ``last`` (the
        transform's final beat: the next write starts a transform).
    w_log2n : In
        ``log2 N`` of the transform being written (read with its last beat).
    w_ready : Out(1)
        The buffer has room for the transform being written.
    w_ready_next : Out(2)
        ``w_ready`` next cycle if no write this cycle ends a transform (bit 0), and if one
        does (bit 1), not counting a region freed this cycle (it counts from the cycle
        after): for a writer that decides a cycle ahead. A register.
    o : Out(stream) of :func:`output_beat`
        Natural order, ``N / lanes`` beats per transform, the first two cycles after the
        transform's last write at the earliest (three with ``write_register``).
    o_log2n : Out
        ``log2 N`` of the transform ``o`` carries (valid with ``o.valid``).
    idle : Out(1)
        The buffer holds nothing: no transform written, none being read out.
    """

    def __init__(self, config, schedule, *, write_register=False):
        if not isinstance(config, ButterflyConfig):
            raise TypeError(f"config must be a ButterflyConfig, not {config!r}")
        self.config = config
        self.schedule = schedule
        self.write_register = write_register
        #: transforms the buffer holds
        self.regions = 3 if write_register else 2
        super().__init__({
            "w_en": In(1),
            "w": In(output_beat(config)),
            "w_log2n": In(range(schedule.log2n_max + 1)),
            "w_ready": Out(1),
            "w_ready_next": Out(2),
            "o": Out(stream.Signature(output_beat(config))),
            "o_log2n": Out(range(schedule.log2n_max + 1)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, sched = self.config, self.schedule
        P, p, lmax = sched.lanes, sched.p, sched.log2n_max
        tbits = lmax - p                        # beat-number bits of the longest transform
        words = 1 << tbits

        # Regions (ping-pong halves, or a ring of three): a region is written only while it
        # is not full and read only while it is, so no read that meets a write is used.
        R = self.regions
        banks = []
        for b in range(P):
            mem = block_ram(m, f"bank{b}", shape=complex_layout(cfg.width), depth=R * words)
            banks.append((mem, mem.write_port()))

        def following(region):
            return Mux(region == R - 1, 0, region + 1)

        full = [Signal(name=f"full{h}") for h in range(R)]
        region_log2n = [Signal(range(lmax + 1), name=f"log2n{h}", init=p) for h in range(R)]

        # -- write side: beat number T, bank λ ^ h(T) ------------------------------------
        # The beat counter and h(T) of the next beat are registers that restart after a
        # transform's last beat (h(0) = 0), so neither waits on a ``first`` flag or on the
        # length's decode. h is held in a copy per bank: each copy drives one bank's lane
        # multiplexers (``2·width`` bits of a ``lanes``-way choice), not all ``lanes`` of them
        # (one h register into all of them was the 1024-point 8-lane array's worst path at
        # 8c4db42; with the copies alone, the multiplexers' routes into the banks were, at
        # 89d1a0a: ``write_register`` ends them in flip-flops).
        w_region = Signal(range(R))
        w_beat = Signal(max(tbits, 1))
        m.d.comb += self.w_ready.eq(~Array(full)[w_region])
        h_next = Signal(p)
        next_beat = w_beat + 1
        with m.Switch(self.w_log2n):
            for log2n in sched.log2n_range:
                h, _ = sched.reorder_map(log2n)
                with m.Case(log2n):
                    m.d.comb += h_next.eq(sum((next_beat[t] << mm for t, mm in h), Const(0, p)))
        h_load = Mux(self.w.last, 0, h_next)
        h_bits = [held_copies(m, f"h{bit}_", P, load=self.w_en, value=h_load[bit])
                  for bit in range(p)]
        lanes_in = Array(self.w.data[lane] for lane in range(P))
        write = {
            "write": self.w_en,
            "addr": Cat(w_beat[:tbits], w_region),
            "data": [lanes_in[Cat(*(copies[b] for copies in h_bits)) ^ b] for b in range(P)],
            "done": self.w_en & self.w.last,        # the write fills its region
            "region": w_region,
            "log2n": self.w_log2n,
        }
        if self.write_register:
            write = vars(stage(m, "write", **write))
        for b, (_, wr) in enumerate(banks):
            m.d.comb += [wr.addr.eq(write["addr"]), wr.data.eq(write["data"][b]), wr.en.eq(write["write"])]
        w_done = self.w_en & self.w.last
        with m.If(self.w_en):
            m.d.sync += w_beat.eq(Mux(self.w.last, 0, w_beat + 1))
        with m.If(w_done):
            m.d.sync += w_region.eq(following(w_region))
        filled = [write["done"] & (write["region"] == h) for h in range(R)]
        # a region whose last beat is in the write register: full from next cycle
        pending = filled if self.write_register else [Const(0, 1)] * R
        for h in range(R):
            with m.If(filled[h]):
                m.d.sync += [full[h].eq(1), region_log2n[h].eq(write["log2n"])]

        # -- read side: output beat t_out, every bank read once ----------------------------
        # ``r_log2n`` (the length of the region being read) and ``r_last`` (``t_out`` is that
        # region's last beat) are registers, computed from the next state: the bank addresses
        # and lane selects decode ``r_log2n``, and ``r_last`` steers the read side, so
        # neither may sit behind a multiplexer or a comparison.
        r_region = Signal(range(R))
        t_out = Signal(max(tbits, 1))
        r_log2n = Signal(range(lmax + 1), init=p)
        r_last = Signal(init=1)
        advance = ~self.o.valid | self.o.ready
        issue = advance & Array(full)[r_region]
        sel_now = [Signal(range(P), name=f"sel_now{lane}") for lane in range(P)]
        addrs = [Signal(max(tbits, 1), name=f"addr{b}") for b in range(P)]
        with m.Switch(r_log2n):
            for log2n in sched.log2n_range:
                with m.Case(log2n):
                    self._read_plan(m, log2n, t_out, addrs, sel_now)
        # Two stages: the bank read (the RAM's read register) and the output register (the
        # DP16KD's own on an ECP5, so the 5.8 ns clock-to-out of a one-register read is off the
        # fabric paths behind it). Both advance together, with the beat's lane selects,
        # ``last`` and length beside them.
        read_data = Array(read(m, f"bank{b}", mem, addr=Cat(addrs[b][:tbits], r_region),
                               en=advance, platform=platform, writes=[wr], registers=2)
                          for b, (mem, wr) in enumerate(banks))
        stages = [{"valid": Signal(name=f"s{k}_valid"), "last": Signal(name=f"s{k}_last"),
                   "log2n": Signal.like(r_log2n, name=f"s{k}_log2n"),
                   "sel": [Signal(range(P), name=f"s{k}_sel{lane}") for lane in range(P)]}
                  for k in range(2)]
        m.d.comb += [
            self.o.valid.eq(stages[1]["valid"]),
            self.o_log2n.eq(stages[1]["log2n"]),
            self.idle.eq(~Cat(*full, *pending, stages[0]["valid"], stages[1]["valid"]).any()),
        ]
        with m.If(advance):
            m.d.sync += [stages[0]["valid"].eq(issue), stages[0]["last"].eq(r_last),
                         stages[0]["log2n"].eq(r_log2n),
                         *(s.eq(n) for s, n in zip(stages[0]["sel"], sel_now))]
            m.d.sync += [stages[1]["valid"].eq(stages[0]["valid"]),
                         stages[1]["last"].eq(stages[0]["last"]),
                         stages[1]["log2n"].eq(stages[0]["log2n"]),
                         *(s.eq(n) for s, n in zip(stages[1]["sel"], stages[0]["sel"]))]
        with m.If(issue):
            with m.If(r_last):
                m.d.sync += [t_out.eq(0), r_region.eq(following(r_region))]
                for h in range(R):
                    with m.If(r_region == h):
                        m.d.sync += full[h].eq(0)
            with m.Else():
                m.d.sync += t_out.eq(t_out + 1)
        r_done = issue & r_last
        region_log2n_next = Array(Mux(filled[h], write["log2n"], region_log2n[h]) for h in range(R))
        r_log2n_next = Signal.like(r_log2n)
        t_out_next = Signal.like(t_out)
        m.d.comb += [
            r_log2n_next.eq(region_log2n_next[Mux(r_done, following(r_region), r_region)]),
            t_out_next.eq(Mux(issue, Mux(r_last, 0, t_out + 1), t_out)),
        ]
        m.d.sync += r_log2n.eq(r_log2n_next)
        with m.Switch(r_log2n_next):
            for log2n in sched.log2n_range:
                with m.Case(log2n):
                    m.d.sync += r_last.eq(t_out_next == (1 << (log2n - p)) - 1)
        # Next cycle's room: a region the reader frees this cycle counts as full, so the
        # output's ready (through ``advance``) reaches no decision of the writer's (at
        # deb4db3 it ran through here into the 16-PE array's enable copies); with three
        # regions that costs a cycle only to transforms of one beat. Both bits are
        # registers, computed a cycle early from the next state of the regions, their
        # write register and the write region (the lookup over the regions was the worst
        # path of both arrays at 0ad29e2, into the enable copies).
        freed = [r_done & (r_region == h) for h in range(R)]
        pending_next = [w_done & (w_region == h) if self.write_register else Const(0, 1)
                        for h in range(R)]
        still_full_next = Array(Mux(freed[h], 0, full[h] | filled[h]) | pending_next[h]
                                for h in range(R))
        w_region_next = Mux(w_done, following(w_region), w_region)
        room = Signal(2, init=0b11)
        m.d.sync += room.eq(Cat(~still_full_next[w_region_next],
                                ~still_full_next[following(w_region_next)]))
        m.d.comb += self.w_ready_next.eq(room)
        for lane in range(P):
            m.d.comb += self.o.payload.data[lane].eq(read_data[stages[1]["sel"][lane]])
        m.d.comb += self.o.payload.last.eq(stages[1]["last"])
        return m

    def _read_plan(self, m, log2n, t_out, addrs, sel_now):
        """Bank addresses and lane selects of output beat ``t_out`` for ``N = 2**log2n``.

        Output sample ``f = t_out·lanes + l`` has x-bit ``x`` = bit ``log2n-1-x`` of ``f``.
        Its bank is ``A·l ^ c``: each bit ``i`` of ``l`` lands in one bank bit ``pos[i]``
        (directly from a lane slot, or through ``h`` from a time slot), and ``c`` collects
        the bits from ``t_out``; so bank ``b`` serves ``l_b`` with ``l_b[i] = (b ^ c)[pos[i]]``.
        """
        sched = self.schedule
        P, p = sched.lanes, sched.p
        lane_map, time_map = sched.final_map(log2n)
        h, _ = sched.reorder_map(log2n)

        def fbit(f_low, q):
            """Bit ``q`` of ``f``: from ``f_low`` (the lane part) or from ``t_out``."""
            return f_low[q] if q < p else t_out[q - p]

        # pos[i]: the bank bit that output lane bit i drives; c: the t_out part of the bank.
        pos = {}
        c_bits = []
        for mm in range(p):
            q = log2n - 1 - lane_map[mm]
            c_bit = Const(0, 1) if q < p else t_out[q - p]
            if q < p:
                pos[q] = mm
            for t, m2 in h:
                if m2 == mm:
                    q2 = log2n - 1 - time_map[t]
                    assert q2 < p
                    pos[q2] = mm
            c_bits.append(c_bit)
        assert sorted(pos) == list(range(p)) and sorted(pos.values()) == list(range(p))
        c = Cat(*c_bits)
        for lane in range(P):
            m.d.comb += sel_now[lane].eq(
                sum(((lane >> i) & 1) << pos[i] for i in range(p)) ^ c)
        for b in range(P):
            l_b = Cat(*((b >> pos[i]) & 1 ^ c[pos[i]] for i in range(p)))
            addr = Cat(*(fbit(l_b, log2n - 1 - x) for x in time_map)) if time_map else Const(0, 1)
            m.d.comb += addrs[b].eq(addr)
