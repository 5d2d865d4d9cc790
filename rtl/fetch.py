"""The Q/K fetcher: an AXI4 read master bringing the plane rows of the alive keys on chip.

Memory layout (:func:`attnforge.sim.qk.plane_layout`): a plane is contiguous, key ``n``'s row
at ``base + n·row_bytes`` (``row_bytes = D·bits/8``, a whole number ``R`` of AXI beats).

A request is a stream of key indices (the survivors of pruning, in increasing order, one
plane per request, ``last`` on the final index): pruned keys are never fetched.

1. **Runs**: consecutive indices are merged into one run (up to ``max_burst`` beats).
2. **Bursts**: each run becomes INCR bursts of at most ``max_burst`` beats that never cross
   a 4 KB boundary (AXI4's rule; rows of e.g. 24 bytes straddle them). Up to
   ``outstanding`` bursts may be in flight; R data comes back in order (one ID). A burst's
   length is registered a cycle before its AR, so ARs are at most one every two cycles.
3. **Rows**: R beats are gathered, ``R`` per key, into one row per output beat, tagged with
   the key's index (kept in a FIFO from intake) and the plane; ``last`` on the request's
   final row.

The AXI port is the read half of AXI4 (AR and R channels), named as AXI names them
(``arvalid``, ``araddr``, …), so a testbench (e.g. cocotbext-axi's ``AxiRam`` through
``AxiReadBus.from_prefix(dut, "axi_")``) binds to it directly. One ID: ``arid`` is 0,
``rid`` and ``rresp`` are ignored.

Counters: the bytes of each plane received since ``clear``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..configs.qk import QKConfig

__all__ = ["MSB", "LSB", "AXIReadSignature", "index_beat", "row_beat", "Fetcher"]

#: the ``plane`` field
MSB, LSB = 0, 1
#: AXI4 INCR burst type
BURST_INCR = 1


def _times(value, k):
    """``value · k`` for a constant ``k``, as a sum of shifted copies of ``value``: Yosys maps a
    constant product to a DSP block, and its unregistered 3.9 ns then sat on the AR path."""
    terms = [value.shift_left(s) for s in range(k.bit_length()) if k >> s & 1]
    return sum(terms[1:], terms[0])


class AXIReadSignature(wiring.Signature):
    """The AR and R channels of an AXI4 master with a one-bit ID (always 0: one ID, in order)."""

    def __init__(self, addr_width, data_width):
        self.addr_width = addr_width
        self.data_width = data_width
        super().__init__({
            "arvalid": Out(1), "arready": In(1), "arid": Out(1), "araddr": Out(addr_width),
            "arlen": Out(8), "arsize": Out(3), "arburst": Out(2),
            "rvalid": In(1), "rready": Out(1), "rid": In(1), "rdata": In(data_width), "rlast": In(1),
            "rresp": In(2),
        })

    def __eq__(self, other):
        return (isinstance(other, AXIReadSignature) and self.addr_width == other.addr_width
                and self.data_width == other.data_width)

    def __repr__(self):
        return f"AXIReadSignature({self.addr_width}, {self.data_width})"


def index_beat(cfg):
    """A key to fetch: its ``index``, the ``plane`` (``MSB``/``LSB``), ``last`` of the request."""
    return data.StructLayout({"index": unsigned(ceil_log2(cfg.n_max)), "plane": 1, "last": 1})


def row_beat(cfg):
    """One key's row of a plane (``D·msb_bits`` bits wide; an LSB row in its low bits), its
    ``index`` and ``plane``, ``last`` on the request's final row."""
    return data.StructLayout({
        "row": unsigned(cfg.head_dim * max(cfg.msb_bits, cfg.lsb_bits)),
        "index": unsigned(ceil_log2(cfg.n_max)),
        "plane": 1,
        "last": 1,
    })


class Fetcher(wiring.Component):
    """AXI4 read master fetching the plane rows of the listed keys, with bursts.

    Parameters
    ----------
    config : QKConfig
        ``head_dim``, ``msb_bits``, ``lsb_bits``, ``n_max``, ``axi_data_width``.
    addr_width : int
        AXI address bits.
    max_burst : int
        Most beats per burst (AXI4 INCR: ≤ 256).
    outstanding : int
        Most bursts in flight (and 8 × this many keys between intake and output).

    Attributes
    ----------
    i : In(stream) of :func:`index_beat`
    o : Out(stream) of :func:`row_beat`
    axi : Out(AXIReadSignature)
    msb_base, lsb_base : In(addr_width)
        Byte addresses of the planes (beat aligned), read while a request runs.
    clear : In(1)
        Zeroes the byte counters.
    msb_bytes, lsb_bytes : Out(32)
        Bytes received per plane since ``clear``.
    """

    def __init__(self, config=QKConfig(), *, addr_width=32, max_burst=64, outstanding=4):
        try:
            if not isinstance(config, QKConfig):
                raise TypeError(f"config must be a QKConfig, not {config!r}")
            if not 1 <= max_burst <= 256:
                raise ValueError(f"max_burst must be in [1, 256], not {max_burst!r}")
            if not 1 <= outstanding <= 64:
                raise ValueError(f"outstanding must be in [1, 64], not {outstanding!r}")
            if not 12 <= addr_width <= 64:
                raise ValueError(f"addr_width must be in [12, 64], not {addr_width!r}")
            row_beats = (config.head_dim * config.msb_bits // config.axi_data_width,
                         config.head_dim * config.lsb_bits // config.axi_data_width)
            if max(row_beats) > max_burst:
                raise ValueError(f"max_burst={max_burst} is shorter than a key's row "
                                 f"({max(row_beats)} beats)")
        except Exception:
            self._MustUse__silence = True   # never built: no UnusedElaboratable
            raise
        self.config = config
        self.addr_width = addr_width
        self.max_burst = max_burst
        self.outstanding = outstanding
        self.row_beats = row_beats
        super().__init__({
            "i": In(stream.Signature(index_beat(config))),
            "o": Out(stream.Signature(row_beat(config))),
            "axi": Out(AXIReadSignature(addr_width, config.axi_data_width)),
            "msb_base": In(addr_width),
            "lsb_base": In(addr_width),
            "clear": In(1),
            "msb_bytes": Out(32),
            "lsb_bytes": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        W = cfg.axi_data_width
        beat_shift = exact_log2(cfg.beat_bytes)
        index_bits = ceil_log2(cfg.n_max)
        keys_max = self.max_burst // max(self.row_beats)     # keys per run, both planes
        row_beats = [self.row_beats[MSB], self.row_beats[LSB]]
        row_bytes = [cfg.msb_row_bytes, cfg.lsb_row_bytes]
        axi = self.axi

        # The keys between intake and output, for the row tags.
        m.submodules.tags = tags = SyncFIFOBuffered(width=index_bits + 1, depth=8 * self.outstanding)

        # ---- 1. Runs of consecutive indices ----------------------------------------------
        run_valid = Signal()
        run_count = Signal(range(keys_max + 1))
        run_plane = Signal()
        # The run's first row's byte offset in its plane and the run's beats, kept as the run
        # grows (no multiplier between the run and ``araddr``).
        run_offset = Signal(index_bits + max(row_bytes).bit_length())
        run_beats = Signal(range(self.max_burst + 1))
        run_closed = Signal()                 # the run's last index has come: emit it
        run_last = Signal()                   # ... and it ends the request
        run_take = Signal()                   # the burst stage takes the run this cycle
        # The index that would extend the run and ``run_count == keys_max``, registers so no
        # carry chain sits between the run and ``i.ready``.
        run_next = Signal(index_bits + 1)
        run_full = Signal()
        inp = self.i.payload
        extends = (run_valid & ~run_closed & (inp.plane == run_plane) &
                   (inp.index == run_next) & ~run_full)
        can_take = (~run_valid | extends | run_take) & tags.w_rdy
        m.d.comb += [
            self.i.ready.eq(can_take),
            tags.w_data.eq(Cat(inp.index, inp.plane)),
            tags.w_en.eq(self.i.valid & can_take),
        ]
        accept = self.i.valid & self.i.ready
        with m.If(run_take):
            m.d.sync += run_valid.eq(0)
        with m.If(accept):
            with m.If(extends):
                m.d.sync += [run_count.eq(run_count + 1), run_next.eq(run_next + 1),
                             run_full.eq(run_count + 1 == keys_max),
                             run_beats.eq(run_beats + Mux(run_plane, row_beats[LSB],
                                                          row_beats[MSB]))]
            with m.Else():
                m.d.sync += [run_valid.eq(1), run_count.eq(1), run_next.eq(inp.index + 1),
                             run_full.eq(keys_max == 1),
                             run_plane.eq(inp.plane),
                             run_offset.eq(Mux(inp.plane, _times(inp.index, row_bytes[LSB]),
                                               _times(inp.index, row_bytes[MSB]))),
                             run_beats.eq(Mux(inp.plane, row_beats[LSB], row_beats[MSB]))]
            m.d.sync += [run_closed.eq(inp.last), run_last.eq(inp.last)]
        # A run is closed once its last index is in, or the next index does not extend it.
        ready_to_issue = run_valid & (run_closed | (self.i.valid & ~extends) | run_full)

        # ---- 2. Bursts -----------------------------------------------------------------
        # Per burst in flight: does it end the request? (Buffered, so its ``r_rdy`` in
        # ``rready`` is a flip-flop.)
        m.submodules.bursts = bursts = SyncFIFOBuffered(width=1, depth=self.outstanding)
        busy = Signal()
        addr = Signal(self.addr_width)
        left = Signal(range(self.max_burst + 1))       # beats of the run still to request
        final = Signal()                               # the run ends the request
        plane = Signal()
        # A burst's length (and whether it ends the run) is computed into registers in the
        # cycle after ``addr`` and ``left`` change (``sized`` low), so the 4 KB arithmetic
        # and the address increment are never one path: at most one AR every two cycles,
        # and a burst is at least a key's row of beats.
        sized = Signal()
        length = Signal(range(self.max_burst + 1))
        ends_run = Signal()
        m.d.comb += run_take.eq(ready_to_issue & ~busy)
        run_addr = Mux(run_plane, self.lsb_base, self.msb_base) + run_offset
        with m.If(run_take):
            m.d.sync += [busy.eq(1), sized.eq(0), addr.eq(run_addr), left.eq(run_beats),
                         final.eq(run_last), plane.eq(run_plane)]
        # Beats up to the next 4 KB boundary (addresses are beat aligned).
        to_4k = Signal(range((4096 >> beat_shift) + 1))
        m.d.comb += to_4k.eq((4096 >> beat_shift) - addr[beat_shift:12])
        with m.If(busy & ~sized):
            m.d.sync += [sized.eq(1), length.eq(Mux(to_4k < left, to_4k, left)),
                         ends_run.eq(left <= to_4k)]
        m.d.comb += [
            axi.arvalid.eq(busy & sized & bursts.w_rdy),
            axi.araddr.eq(addr),
            axi.arlen.eq(length - 1),
            axi.arsize.eq(beat_shift),
            axi.arburst.eq(BURST_INCR),
            bursts.w_data.eq(final & ends_run),
            bursts.w_en.eq(axi.arvalid & axi.arready),
        ]
        with m.If(axi.arvalid & axi.arready):
            m.d.sync += [addr.eq(addr + (length << beat_shift)), left.eq(left - length),
                         sized.eq(0)]
            with m.If(ends_run):
                m.d.sync += busy.eq(0)

        # ---- 3. Rows -------------------------------------------------------------------
        # The R beats of a row go into ``acc``, a word each; the output row *is* ``acc``
        # (``o.valid`` is ``full``), so no beat's decision reaches a wide register's enable
        # or reset: a beat loads its word under ``got`` and a one-hot word register, and
        # whether it ends the row (``row_end``) is a register set on the beat before. While
        # a row waits for ``o.ready``, no beat is taken (it would overwrite ``acc``); the
        # beat that starts the next row may come in the cycle the row leaves.
        words = max(row_beats)
        acc = [Signal(W, name=f"acc{w}") for w in range(words)]
        hot = Signal(words, init=1)                    # the next beat's word, one-hot
        end = Signal()                                 # the next beat ends its row (R > 1)
        full = Signal()
        out_index, out_plane, out_last = Signal(index_bits), Signal(), Signal()
        tag_index, tag_plane = tags.r_data[:index_bits], tags.r_data[index_bits]
        single = [row_beats[p] == 1 for p in (MSB, LSB)]
        if single[MSB] == single[LSB]:
            row_end = Const(1) if single[MSB] else end
        else:
            row_end = end | (hot[0] & Mux(tag_plane, int(single[LSB]), int(single[MSB])))
        # the word before the last of the row: the beat taken there makes ``end``
        penultimate = [hot[row_beats[p] - 2] if row_beats[p] >= 2 else Const(0) for p in (MSB, LSB)]
        m.d.comb += axi.rready.eq(tags.r_rdy & bursts.r_rdy & (~full | self.o.ready))
        got = axi.rvalid & axi.rready
        for w in range(words):
            with m.If(got & hot[w]):
                m.d.sync += acc[w].eq(axi.rdata)
        with m.If(self.o.ready):
            m.d.sync += full.eq(0)
        with m.If(got):
            with m.If(row_end):
                m.d.sync += [hot.eq(1), end.eq(0), full.eq(1), out_index.eq(tag_index),
                             out_plane.eq(tag_plane), out_last.eq(axi.rlast & bursts.r_data)]
            with m.Else():
                m.d.sync += [hot.eq(hot << 1),
                             end.eq(Mux(tag_plane, penultimate[LSB], penultimate[MSB]))]
        # An LSB row fills the low words; the words above it (MSB data) read as zero.
        row = Cat(*acc)
        lsb_width = cfg.head_dim * cfg.lsb_bits
        if cfg.msb_bits > cfg.lsb_bits:
            row = Cat(row[:lsb_width], Mux(out_plane, 0, row[lsb_width:]))
        m.d.comb += [
            self.o.valid.eq(full),
            self.o.payload.row.eq(row),
            self.o.payload.index.eq(out_index),
            self.o.payload.plane.eq(out_plane),
            self.o.payload.last.eq(out_last),
            tags.r_en.eq(got & row_end),
            bursts.r_en.eq(got & axi.rlast),
        ]

        # ---- Counters ------------------------------------------------------------------
        with m.If(self.clear):
            m.d.sync += [self.msb_bytes.eq(0), self.lsb_bytes.eq(0)]
        with m.Elif(got):
            with m.If(tag_plane):
                m.d.sync += self.lsb_bytes.eq(self.lsb_bytes + cfg.beat_bytes)
            with m.Else():
                m.d.sync += self.msb_bytes.eq(self.msb_bytes + cfg.beat_bytes)
        return m
