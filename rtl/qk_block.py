"""The ``qk`` block: SpAtten's score front end, from DRAM key planes to probabilities.

One head at a time: a ``head`` beat gives the head's key count ``N``, its reuse mode and its
alive mask; then each ``q`` beat is a query (a *row*), ``last`` on the head's final one.
Per row the block

1. fetches the MSB-plane rows of the alive keys through the AXI4 read master
   (:class:`~attnforge.rtl.fetch.Fetcher`) into the **Key buffer** (per lane, one
   :class:`~amaranth.lib.memory.Memory` per plane of ``key_banks`` banks of ``n_max / L``
   rows; key ``i`` is row ``i // L`` of lane ``i mod L``), unless the buffer already holds them;
2. streams the buffer, ``L`` keys per beat, through the bitwidth converter, the Q×K lanes
   and the softmax (:class:`~attnforge.rtl.qk.QKDatapath`) — a word as soon as its alive
   keys have arrived, so the compute follows the fetch;
3. checks the row's maximum probability against ``threshold``; below it, the MSB-only
   result is dropped, the LSB-plane rows are fetched (unless held) and the row is
   recomputed with full keys: those probabilities leave, marked ``refetched``.

**Reuse modes** (per head). *summarization*: rows fetched once stay in the Key buffer for
the head (the first row pays the MSB plane, the first refetched row the LSB plane).
*generation*: nothing stays; every row fetches its MSB rows and, when refetched, its LSB
rows. Both give the probabilities, decisions and per-row bytes of
:func:`attnforge.sim.qk.attention_probs`, bit for bit.

**Speculation** (summarization). A row's decision comes out of the softmax ``≈ 2·B + 40``
cycles after its first keys go in (``B = ceil(N / L)`` beats). Rather than wait, the
dispatcher sends up to :data:`ROW_SLOTS` rows ahead; when a row turns out to need its LSBs,
the rows sent after it are *squashed* (an epoch bit flips; their outputs are dropped as
they leave), the row's full-key pass goes next and the later rows are sent again. Their
queries wait in a ring of :data:`ROW_SLOTS` entries (LUT RAM) until their row is committed. Rows
that need no LSBs (94 % of GPT-2's in SpAtten's report) therefore follow each other every
``B + 3`` cycles: the softmax's ``B + 1``, the dispatcher's registered choice and the
cycle after it, when the pass's registered Key-buffer flags are not yet its own. In
*generation* mode row ``r`` has bank ``r mod key_banks`` to itself, so up to
``key_banks`` rows are in flight: the next row's MSB fetch runs while the current row is
in the softmax. A squashed generation row keeps its keys (its
bank still holds them), so it is never fetched twice and its bytes count once.

Outputs leave in row order, one beat per ``L`` keys, with the row number, the decision and
the bytes the row caused to be read (the fetcher's rows received while that row owned the
fetch). Counters (cleared by ``clear``): committed rows, refetched rows, squashed passes,
bytes per plane, busy cycles.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..config import ConfigError
from ..configs.qk import QKConfig
from .fetch import LSB, MSB, AXIReadSignature, Fetcher
from .pipeline import enable_copies, flag_copies, held_copies
from .qk import QKDatapath, plane_row, query_layout

__all__ = ["ROW_SLOTS", "GENERATION", "SUMMARIZATION", "head_beat", "query_beat", "output_beat",
           "QKBlock"]

#: rows between dispatch and commit (the query ring, the per-row byte counters)
ROW_SLOTS = 4
#: copies of the flags that steer the n_max-bit alive shift registers
FLAG_COPIES = 8
#: memories of the query ring (each holds a group of the elements, read at its own address)
RING_COPIES = 8
#: copies of the dispatcher's pipeline enable besides the Key buffer lanes' read enables (the
#: control's, and shares of the key words')
ADVANCE_COPIES = 4
#: copies of the flag that loads the head register (each enables a share of its bits)
HEAD_LOAD_COPIES = 8
#: the ``mode`` field
SUMMARIZATION, GENERATION = 0, 1
#: bits of the ``row`` field (row numbers within a head wrap at 2**ROW_BITS)
ROW_BITS = 16
#: bits of the counters
COUNTER_BITS = 32


def _free_shift(m, bits, step, load, shifting):
    """Shift ``bits`` right by ``step`` every cycle a copy of ``shifting`` is high, else load
    ``load``: no enable, and each copy of the flag selects an equal share of the bits."""
    share = -(-len(bits) // len(shifting))
    shifted = bits >> step
    for n, flag in enumerate(shifting):
        part = slice(n * share, min((n + 1) * share, len(bits)))
        m.d.sync += bits[part].eq(Mux(flag, shifted[part], load[part]))


def head_beat(cfg, addr_width=32):
    """A head: ``n_keys`` (1 … n_max), ``mode`` (``SUMMARIZATION``/``GENERATION``), the
    ``alive`` mask (bit ``n`` for key ``n``, at least one set; keys ≥ ``n_keys`` ignored),
    the planes' byte addresses ``msb_base``/``lsb_base`` (beat aligned,
    :func:`attnforge.sim.qk.plane_layout`), the softmax's ``scale_mant``/``scale_shift``
    (:func:`attnforge.sim.softmax.scale_constant`) and the refetch ``threshold``
    (:func:`attnforge.sim.softmax.threshold_code`)."""
    return data.StructLayout({
        "n_keys": unsigned(ceil_log2(cfg.n_max + 1)),
        "mode": 1,
        "alive": unsigned(cfg.n_max),
        "msb_base": unsigned(addr_width),
        "lsb_base": unsigned(addr_width),
        "scale_mant": unsigned(cfg.SCALE_MANT_BITS),
        "scale_shift": unsigned(cfg.SCALE_SHIFT_BITS),
        "threshold": unsigned(cfg.threshold_bits),
    })


def query_beat(cfg):
    """A row's query (``D`` × 12-bit signed); ``last`` on the head's final row."""
    return data.StructLayout({"q": query_layout(cfg), "last": 1})


def _row_bytes_bits(cfg):
    return ceil_log2(cfg.n_max * max(cfg.msb_row_bytes, cfg.lsb_row_bytes) + 1)


def output_beat(cfg):
    """``L`` probabilities of a row (dead keys 0) and their ``alive`` flags; on every beat the
    ``row`` number within the head, ``refetched``, the emitted pass's ``max_prob``, and the
    row's ``msb_bytes``/``lsb_bytes`` read from DRAM; ``last`` on the row's final beat."""
    lanes = cfg.scores_per_cycle
    count = unsigned(_row_bytes_bits(cfg))
    return data.StructLayout({
        "probs": data.ArrayLayout(unsigned(cfg.prob_bits), lanes),
        "alive": unsigned(lanes),
        "row": unsigned(ROW_BITS),
        "refetched": 1,
        "max_prob": unsigned(cfg.prob_bits),
        "msb_bytes": count,
        "lsb_bytes": count,
        "last": 1,
    })


class QKBlock(wiring.Component):
    """The Q/K score front end with progressive quantization (block ``qk``).

    Parameters
    ----------
    config : QKConfig
        ``scores_per_cycle`` must be a power of two, at most ``n_max``.
    addr_width : int
        AXI address bits.

    Attributes
    ----------
    head : In(stream) of :func:`head_beat`
        Accepted when the previous head's rows have all left; its fields hold for the head.
    q : In(stream) of :func:`query_beat`
        The head's queries, in row order.
    o : Out(stream) of :func:`output_beat`
        The rows' probabilities, in row order.
    axi : Out(AXIReadSignature)
        The AR and R channels of the AXI4 read master (single ID).
    clear : In(1)
        Zeroes the counters.
    rows, refetched, squashed, msb_bytes, lsb_bytes, cycles : Out(32)
        Rows committed, rows recomputed with full keys, passes dropped by speculation, bytes
        read per plane, cycles with a head in progress.
    """

    @staticmethod
    def check_config(config):
        """What the block needs beyond :class:`QKConfig`'s own checks (raises ConfigError)."""
        if not isinstance(config, QKConfig):
            raise TypeError(f"config must be a QKConfig, not {config!r}")
        lanes = config.scores_per_cycle
        if lanes & (lanes - 1) or lanes > config.n_max:
            raise ConfigError(f"the qk block needs scores_per_cycle = multipliers / head_dim = "
                              f"{config.multipliers}/{config.head_dim} = {lanes} to be a power "
                              f"of two ≤ n_max={config.n_max}")

    def __init__(self, config=QKConfig(), *, addr_width=32):
        self.check_config(config)
        self.config = config
        self.addr_width = addr_width
        super().__init__({
            "head": In(stream.Signature(head_beat(config, addr_width))),
            "q": In(stream.Signature(query_beat(config))),
            "o": Out(stream.Signature(output_beat(config))),
            "axi": Out(AXIReadSignature(addr_width, config.axi_data_width)),
            "clear": In(1),
            **{name: Out(COUNTER_BITS)
               for name in ("rows", "refetched", "squashed", "msb_bytes", "lsb_bytes", "cycles")},
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        L = cfg.scores_per_cycle
        lane_bits = exact_log2(L)
        words = cfg.n_max // L
        word_bits = exact_log2(words)
        bank_bits = exact_log2(cfg.key_banks)
        index_bits = ceil_log2(cfg.n_max)
        count_bits = _row_bytes_bits(cfg)
        slot_bits = exact_log2(ROW_SLOTS)
        PLANES = (MSB, LSB)

        m.submodules.fetcher = fetcher = Fetcher(cfg, addr_width=self.addr_width)
        m.submodules.datapath = dp = QKDatapath(cfg)
        wiring.connect(m, fetcher.axi, wiring.flipped(self.axi))

        # ---- The head --------------------------------------------------------------------
        active = Signal()
        head_done = Signal()                        # the head's last row has left
        head = Signal(self.head.payload.shape())
        n_keys, alive = head.n_keys, head.alive
        generation = head.mode == GENERATION
        m.d.comb += [
            fetcher.msb_base.eq(head.msb_base),
            fetcher.lsb_base.eq(head.lsb_base),
            fetcher.clear.eq(self.clear),
            self.msb_bytes.eq(fetcher.msb_bytes),
            self.lsb_bytes.eq(fetcher.lsb_bytes),
            dp.scale_mant.eq(head.scale_mant),
            dp.scale_shift.eq(head.scale_shift),
            dp.threshold.eq(head.threshold),
        ]
        beats = Signal(range(words + 1))            # B = ceil(N / L)
        received = Signal(ROW_BITS)                 # queries taken into the ring
        q_done = Signal()                           # the head's last query is in
        next_row = Signal(ROW_BITS)                 # the next row to send (MSB pass)
        frontier = Signal(ROW_BITS)                 # rows below it have been sent at least once
        commit = Signal(ROW_BITS)                   # the next row to leave
        replay = Signal()                           # send commit's full-key pass next
        epoch = Signal()                            # flips at each squash

        # Rows sent ahead of commit (next_row − commit, at most ROW_SLOTS), kept beside them as
        # a small register: the 16-bit difference and its compare ran from next_row into the
        # dispatcher's registered choice (``go``) through two carry chains.
        ahead = Signal(range(ROW_SLOTS + 1))

        def bank_of(row):
            """Summarization shares one bank for the head; generation gives row r bank r mod banks."""
            return Mux(generation, row[:bank_bits], 0) if bank_bits else Const(0, 1)

        # The Key buffer's bookkeeping, per plane and bank: ``held`` (fetched or being fetched,
        # for ``holder``'s row in generation mode, for the whole head in summarization mode)
        # and ``done``; ``progress``: words complete of the plane's fetch in progress.
        def per_bank(name, shape):
            return Array(Array(Signal(shape, name=f"{name}_{p}{b}") for b in range(cfg.key_banks))
                         for p in ("msb", "lsb"))
        held, done = per_bank("held", 1), per_bank("done", 1)
        holder = per_bank("holder", ROW_BITS)
        progress = Array(Signal(range(words + 1), name=f"progress_{p}") for p in ("msb", "lsb"))
        fetching = Signal()
        fetch_plane = Signal()
        fetch_bank = Signal(max(1, bank_bits))
        fetch_owner = Signal(slot_bits)

        # ---- Queries: a ring of ROW_SLOTS rows until commit ---------------------------------
        # The ring is RING_COPIES small memories (LUT RAM on ECP5), each holding a group of
        # the query's elements, written straight from ``q`` and read asynchronously at an
        # address of its own (registered: the read-slot copies) into the dispatched query register.
        # (As 1,536 flip-flops behind a holding register, with their slot multiplexers and
        # write enables, the ring was the most congested corner of the block.) ``q.ready``
        # comes from registers: ``ring_used`` counts the rows between intake and commit.
        ring_used = Signal(range(ROW_SLOTS + 1))
        m.d.comb += self.q.ready.eq(active & ~q_done & (ring_used != ROW_SLOTS))
        to_ring = self.q.valid & self.q.ready
        copies = min(RING_COPIES, cfg.head_dim)
        group = cfg.head_dim // copies
        ring_reads = []
        for c in range(copies):
            elements = range(c * group, (c + 1) * group)
            ring = memory.Memory(shape=data.ArrayLayout(signed(cfg.DATA_BITS), group),
                                 depth=ROW_SLOTS, init=[])
            m.submodules[f"query_ring{c}"] = ring
            write, read = ring.write_port(), ring.read_port(domain="comb")
            m.d.comb += [
                write.addr.eq(received[:slot_bits]), write.en.eq(to_ring),
                *(write.data[n].eq(self.q.payload.q[j]) for n, j in enumerate(elements)),
            ]
            ring_reads.append(read)
        with m.If(to_ring):
            m.d.sync += received.eq(received + 1)
            with m.If(self.q.payload.last):
                m.d.sync += q_done.eq(1)

        # ---- Per-row bytes: what each row in flight caused to be read -----------------------
        row_bytes = Array(Array(Signal(count_bits, name=f"row{s}_{p}_bytes") for p in ("msb", "lsb"))
                          for s in range(ROW_SLOTS))

        # ---- Pass tags: one per pass in the datapath, in order ----------------------------
        tag = data.StructLayout({"row": unsigned(ROW_BITS), "plane": 1, "epoch": 1})
        m.submodules.tags = tags = SyncFIFOBuffered(width=tag.size, depth=2 * ROW_SLOTS)
        out_tag = data.View(tag, tags.r_data)

        # ---- The dispatcher: one pass at a time into the datapath --------------------------
        dispatching = Signal()                      # a pass's words are being sent
        plane = Signal()                            # ... of this plane
        bank = Signal.like(fetch_bank)              # ... from this bank
        word = Signal(range(words + 1))
        q_valid = Signal()
        q_payload = Signal(query_layout(cfg))
        m.d.comb += [dp.q.valid.eq(q_valid), dp.q.payload.eq(q_payload)]
        with m.If(dp.q.valid & dp.q.ready):
            m.d.sync += q_valid.eq(0)

        want_plane = Mux(replay, LSB, MSB)
        want_row = Mux(replay, commit, next_row)
        want_bank = bank_of(want_row)
        there = held[want_plane][want_bank] & (~generation | (holder[want_plane][want_bank] == want_row))
        # A generation row overwrites the bank of the row key_banks before it: that one must
        # have left. Summarization rows read the same bank, up to ROW_SLOTS of them in flight.
        # (``next_row != received`` is ``ahead != ring_used``: both count from commit.)
        row_ok = Mux(replay, 1, (ahead != ring_used) &
                     (ahead < Mux(generation, cfg.key_banks, ROW_SLOTS)))
        squash = Signal()
        # The choice is registered and carried out the next cycle (``go``): the bookkeeping
        # above is too deep to also drive the thousands of registers a launch loads. A squash
        # in the choosing cycle cancels the choice.
        go = Signal()
        chosen = Signal(data.StructLayout({"row": unsigned(ROW_BITS), "plane": 1,
                                           "bank": len(fetch_bank), "fetch": 1, "replay": 1,
                                           "fresh": 1, "epoch": 1}))
        choose = (active & ~go & ~dispatching & ~q_valid & tags.w_rdy & row_ok &
                  (there | ~fetching))
        m.d.sync += [
            go.eq(choose & ~squash),
            chosen.eq(Cat(want_row, want_plane, want_bank, ~there, replay, next_row == frontier, epoch)),
        ]
        start_fetch = Signal()
        slot_chosen = chosen.row[:slot_bits]
        # The chosen slot again, one copy per ring memory: each memory's read address. Like
        # ``chosen``, a copy loads the wanted row every cycle but holds under ``go`` (the
        # choosing cycle has no ``go``), so it equals ``slot_chosen`` under ``go``; loading on
        # ``choose`` put the whole choice's logic in front of them.
        for c, read in enumerate(ring_reads):
            m.d.comb += read.addr.eq(Cat(*(held_copies(m, f"read_slot{c}_{b}", 1, load=~go,
                                                      value=want_row[b])[0]
                                           for b in range(slot_bits))))
        m.d.comb += [
            start_fetch.eq(go & chosen.fetch),
            tags.w_en.eq(go),
            tags.w_data.eq(Cat(chosen.row, chosen.plane, chosen.epoch)),
        ]
        # ``go`` again, one copy per ring memory, each loading its group of ``q_payload`` (one
        # ``go`` drove 384 enables: 10.5 ns of routing). ``go`` is never high two cycles running
        # (``choose`` needs ``~go``), so a copy's next value may read its own output.
        for c, read in enumerate(ring_reads):
            launch = Signal(name=f"go{c}")
            m.d.sync += launch.eq(~launch & choose & ~squash)
            with m.If(launch):
                m.d.sync += [q_payload[j].eq(read.data[n])
                             for n, j in enumerate(range(c * group, (c + 1) * group))]
        with m.If(go):
            m.d.sync += [dispatching.eq(1), plane.eq(chosen.plane), bank.eq(chosen.bank), word.eq(0),
                         q_valid.eq(1)]
            with m.If(chosen.replay):
                m.d.sync += replay.eq(0)
            with m.Else():
                m.d.sync += next_row.eq(chosen.row + 1)
                with m.If(chosen.fresh):              # a row's first pass: its counts start
                    m.d.sync += frontier.eq(frontier + 1)
                    for p in PLANES:
                        m.d.sync += row_bytes[slot_chosen][p].eq(0)
        with m.If(start_fetch):
            m.d.sync += [fetching.eq(1), fetch_plane.eq(chosen.plane), fetch_bank.eq(chosen.bank),
                         fetch_owner.eq(slot_chosen), progress[chosen.plane].eq(0),
                         held[chosen.plane][chosen.bank].eq(1), done[chosen.plane][chosen.bank].eq(0),
                         holder[chosen.plane][chosen.bank].eq(chosen.row)]

        # The head's alive flags, ``L`` a word, copied into a memory beside the Key buffer
        # while the head starts (a word a cycle, from a shift register), so a pass reads them
        # with its keys instead of through an n_max-to-L multiplexer. The shift register has
        # no enable: it loads the offered head while idle and shifts while active, its
        # selects driven by copies of ``active`` (an enable reaching n_max flip-flops was
        # a critical path).
        m.submodules.alive_mem = alive_mem = memory.Memory(shape=unsigned(L), depth=words, init=[])
        alive_wr, alive_rd = alive_mem.write_port(), alive_mem.read_port()
        alive_words = Signal(range(words + 1))      # words copied so far
        alive_bits = Signal(cfg.n_max)              # the flags still to copy, next word lowest
        m.d.comb += [alive_wr.addr.eq(alive_words), alive_wr.data.eq(alive_bits[:L]),
                     alive_wr.en.eq(alive_words != words)]
        with m.If(alive_words != words):
            m.d.sync += alive_words.eq(alive_words + 1)
        _free_shift(m, alive_bits, L, self.head.payload.alive,
                    flag_copies(m, "copying", FLAG_COPIES, set=self.head.valid & self.head.ready,
                                clear=head_done))

        # Words into the datapath: read from both planes of the pass's bank (registered reads).
        # Each lane has memories of its own, with its own copy of the read address, its own
        # read enable and (below) its own registered write port: the buffer is some 40 block
        # RAMs across the die, and one address register reaching all of them was a 10-11 ns
        # routing hop (the read's ``word``, or the fetcher's output register on the write side).
        def buffer(lane, name, bits, signed_):
            mem = memory.Memory(shape=plane_row(cfg, bits, signed_), depth=words * cfg.key_banks,
                                init=[])
            m.submodules[f"{name}_mem{lane}"] = mem
            return mem
        msb_mems = [buffer(lane, "msb", cfg.msb_bits, True) for lane in range(L)]
        lsb_mems = [buffer(lane, "lsb", cfg.lsb_bits, False) for lane in range(L)]
        msb_rds, lsb_rds = [mem.read_port() for mem in msb_mems], [mem.read_port() for mem in lsb_mems]
        # Two stages under one enable: the block-RAM read (with its word's flags beside it),
        # then a fabric register, so no path runs from a block RAM's output into the
        # multipliers' operand registers.
        k_valid, k_in_range, k_last, k_full = Signal(), Signal(L), Signal(), Signal()
        d_beat = Signal(dp.i.payload.shape())
        # ``d_valid`` in ADVANCE_COPIES + L copies, each giving an ``advance`` of its own: one
        # for the dispatcher's control, one per lane's reads, the others for shares of
        # ``d_beat`` (one ``advance`` net reached some 700 enables and sat between ``d_valid``
        # and ``send``).
        d_valids = enable_copies(m, "d_valid", ADVANCE_COPIES + L, init=0,
                                 if_enabled=Mux(dp.i.ready, k_valid, 1), if_stalled=k_valid)
        advances = [~d_valid | dp.i.ready for d_valid in d_valids]
        advance, read_advances, share_advances = advances[0], advances[1:L + 1], advances[L + 1:]

        # Whether a word of the pass is in the Key buffer, registered a cycle late for both
        # ``word`` and ``word + 1`` (the compares and the bank's flags were one path from
        # ``word`` through ``send`` back to ``word``). Late is safe: within a pass, a word once
        # there stays there (``progress`` and ``alive_words`` only grow, ``done`` only sets;
        # they restart with a fetch, at ``go``), and the cycle after ``go``, whose registered
        # flags predate the pass, sends nothing.
        def word_ready(w):
            def there(p):
                in_progress = fetching & (fetch_plane == p) & (fetch_bank == bank) & (w < progress[p])
                return done[p][bank] | in_progress
            return (w < alive_words) & there(MSB) & ((plane == MSB) | there(LSB))
        ready_now, ready_next, sent, launched = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [ready_now.eq(word_ready(word)), ready_next.eq(word_ready(word + 1)),
                     launched.eq(go)]
        send = dispatching & advance & ~launched & Mux(sent, ready_next, ready_now)
        m.d.sync += sent.eq(send)
        in_range = Cat(((word << lane_bits) + lane) < n_keys for lane in range(L))
        # The lane's copy of Cat(word, bank): set with ``go``, counting with ``send`` (a carry
        # into the bank bits past the pass's last word reads nothing that is kept). Its next
        # value reads its own output, so synthesis keeps the copies apart.
        for lane, read_advance in enumerate(read_advances):
            read_addr = Signal(word_bits + bank_bits, name=f"read_addr{lane}")
            with m.If(go):
                m.d.sync += read_addr.eq(Cat(Const(0, word_bits), chosen.bank[:bank_bits]))
            with m.If(send):
                m.d.sync += read_addr.eq(read_addr + 1)
            for rd in (msb_rds[lane], lsb_rds[lane]):
                m.d.comb += [rd.addr.eq(read_addr), rd.en.eq(read_advance)]
        m.d.comb += [
            alive_rd.addr.eq(word), alive_rd.en.eq(advance),
            dp.i.valid.eq(d_valids[0]),
            dp.i.payload.eq(d_beat),
        ]
        with m.If(advance):
            m.d.sync += [
                k_valid.eq(send),
                d_beat.full.eq(k_full),
                d_beat.alive.eq(alive_rd.data & k_in_range),
                d_beat.last.eq(k_last),
            ]
        shares = len(share_advances)
        for c, share_advance in enumerate(share_advances):
            with m.If(share_advance):
                for field, rds in ((d_beat.msb, msb_rds), (d_beat.lsb, lsb_rds)):
                    bits, words = field.as_value(), Cat(Value.cast(rd.data) for rd in rds)
                    part = slice(c * len(bits) // shares, (c + 1) * len(bits) // shares)
                    m.d.sync += bits[part].eq(words[part])
        with m.If(send):
            m.d.sync += [
                k_in_range.eq(in_range),
                k_last.eq(word == beats - 1),
                k_full.eq(plane == LSB),
                word.eq(word + 1),
            ]
            with m.If(word == beats - 1):
                m.d.sync += dispatching.eq(0)

        # ---- The fetch: indices of the alive keys, then rows into the Key buffer -----------
        scan = Signal(index_bits + 1)               # next key to look at
        scanning = Signal()
        pending = Signal(index_bits)                # the last alive key found, not yet sent
        pending_valid = Signal()
        scan_alive = Signal(cfg.n_max)              # alive >> scan: key ``scan``'s flag in bit 0
        with m.If(start_fetch):
            m.d.sync += [scan.eq(0), scanning.eq(1), pending_valid.eq(0)]
        scan_end = scanning & (scan + 1 == n_keys)
        _free_shift(m, scan_alive, 1, alive, flag_copies(m, "scanning", FLAG_COPIES,
                                                         set=start_fetch, clear=scan_end))
        found = scanning & scan_alive[0]
        # The pending index goes out once the next alive key is found (``last`` = 0) or the
        # scan has ended (``last`` = 1), into a FIFO with room for every key of a fetch (one
        # fetch at a time): the scan never waits, so its shift register has no enable, and
        # the fetcher's ready never reaches it.
        m.submodules.indices = indices = SyncFIFOBuffered(width=len(fetcher.i.payload.as_value()),
                                                          depth=max(cfg.n_max, 2))
        m.submodules.index_out = index_out = SyncFIFOBuffered(width=len(indices.r_data), depth=2)
        index = data.View(fetcher.i.payload.shape(), indices.w_data)
        m.d.comb += [
            indices.w_en.eq(pending_valid & (found | ~scanning)),
            index.index.eq(pending),
            index.plane.eq(fetch_plane),
            index.last.eq(~scanning),
            # a two-entry register FIFO after the block-RAM one: the fetcher's ready logic
            # starts at a flip-flop, not at the block RAM's 5.8 ns clock-to-out
            index_out.w_data.eq(indices.r_data),
            index_out.w_en.eq(indices.r_rdy),
            indices.r_en.eq(index_out.w_rdy),
            fetcher.i.valid.eq(index_out.r_rdy),
            fetcher.i.payload.eq(index_out.r_data),
            index_out.r_en.eq(fetcher.i.ready),
        ]
        sent = indices.w_en & indices.w_rdy
        with m.If(sent & ~scanning):
            m.d.sync += pending_valid.eq(0)
        with m.If(scanning):
            m.d.sync += scan.eq(scan + 1)
            with m.If(found):
                m.d.sync += [pending.eq(scan), pending_valid.eq(1)]
            with m.If(scan_end):
                m.d.sync += scanning.eq(0)

        row = fetcher.o.payload
        row_lane = row.index[:lane_bits] if lane_bits else Const(0, 1)
        m.d.comb += fetcher.o.ready.eq(1)
        # The fetcher's row is written a cycle late, from registers of the row's lane (loaded
        # only for that lane, so they are not merged): the pass's registered word flags
        # (``ready_now``) see a row two cycles after it arrives, so the write still lands
        # before the word can be read.
        for lane in range(L):
            for_lane = fetcher.o.valid & (row_lane == lane)
            write_addr = Signal(word_bits + bank_bits, name=f"write_addr{lane}")
            write_row = Signal(len(row.row), name=f"write_row{lane}")
            write_plane = [Signal(name=f"write_{name}{lane}") for name in ("msb", "lsb")]
            m.d.sync += [write_plane[p].eq(for_lane & (row.plane == p)) for p in PLANES]
            with m.If(for_lane):
                m.d.sync += [write_addr.eq(Cat((row.index >> lane_bits)[:word_bits],
                                               fetch_bank[:bank_bits])),
                             write_row.eq(row.row)]
            for p, mem, bits in ((MSB, msb_mems[lane], cfg.msb_bits), (LSB, lsb_mems[lane], cfg.lsb_bits)):
                wr = mem.write_port()
                m.d.comb += [wr.addr.eq(write_addr), wr.data.eq(write_row[:cfg.head_dim * bits]),
                             wr.en.eq(write_plane[p])]
        # Each row's bytes count a cycle later, under per-counter flags registered from the
        # fetcher's output (its register → the owner's counter multiplexer → adder → write
        # decode was one path); a row's outputs leave many cycles after its last key arrives.
        for owner in range(ROW_SLOTS):
            for p in PLANES:
                count_row = Signal(name=f"row{owner}_{('msb', 'lsb')[p]}_count")
                m.d.sync += count_row.eq(fetcher.o.valid & (fetch_owner == owner) & (row.plane == p))
                with m.If(count_row):
                    counter = row_bytes[owner][p]
                    m.d.sync += counter.eq(counter + (cfg.lsb_row_bytes if p == LSB else cfg.msb_row_bytes))
        with m.If(fetcher.o.valid):
            m.d.sync += progress[row.plane].eq((row.index + 1) >> lane_bits)
            with m.If(row.last):
                m.d.sync += [fetching.eq(0), done[fetch_plane][fetch_bank].eq(1)]

        # ---- Out: keep the current epoch's rows, drop squashed and low-confidence passes ---
        # A small FIFO first, so the softmax's output ready (its normalize pipeline's clock
        # enable) comes from a register, not from the decision below.
        m.submodules.out_fifo = out_fifo = SyncFIFOBuffered(width=len(dp.o.payload.as_value()), depth=4)
        m.d.comb += [
            out_fifo.w_data.eq(dp.o.payload),
            out_fifo.w_en.eq(dp.o.valid),
            dp.o.ready.eq(out_fifo.w_rdy),
        ]
        prob = stream.Signature(dp.o.payload.shape()).create()
        m.d.comb += [prob.valid.eq(out_fifo.r_rdy), prob.payload.eq(out_fifo.r_data),
                     out_fifo.r_en.eq(prob.ready)]
        beat = prob.payload
        in_row, keep_row = Signal(), Signal()
        current = out_tag.epoch == epoch
        low_confidence = current & (out_tag.plane == MSB) & beat.refetch
        keep = Mux(in_row, keep_row, current & ~low_confidence)
        out = self.o.payload
        slot = out_tag.row[:slot_bits]
        m.d.comb += [
            self.o.valid.eq(prob.valid & keep),
            prob.ready.eq(~keep | self.o.ready),
            out.probs.eq(beat.probs),
            out.alive.eq(beat.alive),
            out.row.eq(out_tag.row),
            out.refetched.eq(out_tag.plane == LSB),
            out.max_prob.eq(beat.max_prob),
            out.msb_bytes.eq(row_bytes[slot][MSB]),
            out.lsb_bytes.eq(row_bytes[slot][LSB]),
            out.last.eq(beat.last),
            tags.r_en.eq(prob.valid & prob.ready & beat.last),
            squash.eq(prob.valid & prob.ready & ~in_row & low_confidence),
        ]
        with m.If(prob.valid & prob.ready):
            m.d.sync += [in_row.eq(~beat.last), keep_row.eq(keep)]
        committed = prob.valid & prob.ready & beat.last & keep
        with m.If(committed):
            m.d.sync += commit.eq(commit + 1)
        m.d.sync += ring_used.eq(ring_used + to_ring - committed)
        # next_row becomes chosen.row + 1 = next_row + 1 on a first pass's go (the choice
        # is made with no go in flight), commit + 1 on a squash (never in a commit's cycle)
        m.d.sync += ahead.eq(Mux(squash, 1, ahead + (go & ~chosen.replay)) - committed)
        with m.If(squash):
            m.d.sync += [epoch.eq(~epoch), replay.eq(1), next_row.eq(commit + 1)]

        # ---- Heads ---------------------------------------------------------------------------
        m.d.comb += head_done.eq(active & q_done & (commit == received) & ~go &
                                 ~dispatching & ~q_valid & ~tags.r_rdy & ~fetching)
        m.d.comb += self.head.ready.eq(~active)
        with m.If(head_done):
            m.d.sync += active.eq(0)
        # The head register loads whatever is offered while the block is idle (the accepted
        # head on the cycle it is taken, then holds), under HEAD_LOAD_COPIES flip-flop copies
        # of "idle", each enabling a share of its bits: head.valid & ~active reached all
        # 1,185 enables through one LUT (8.2 ns of routing).
        loading = enable_copies(m, "head_load", HEAD_LOAD_COPIES, if_enabled=~self.head.valid,
                                if_stalled=head_done)
        head_bits, offered = head.as_value(), self.head.payload.as_value()
        share = -(-len(head_bits) // HEAD_LOAD_COPIES)
        for n, load in enumerate(loading):
            with m.If(load):
                m.d.sync += head_bits[n * share:(n + 1) * share].eq(offered[n * share:(n + 1) * share])
        with m.If(self.head.valid & self.head.ready):
            m.d.sync += [
                active.eq(1),
                beats.eq((self.head.payload.n_keys + L - 1) >> lane_bits),
                received.eq(0), q_done.eq(0), next_row.eq(0), frontier.eq(0), commit.eq(0),
                replay.eq(0), alive_words.eq(0), ring_used.eq(0), ahead.eq(0),
                *(held[p][b].eq(0) for p in PLANES for b in range(cfg.key_banks)),
            ]

        # ---- Counters --------------------------------------------------------------------------
        with m.If(self.clear):
            m.d.sync += [self.rows.eq(0), self.refetched.eq(0), self.squashed.eq(0), self.cycles.eq(0)]
        with m.Else():
            with m.If(committed):
                m.d.sync += [self.rows.eq(self.rows + 1),
                             self.refetched.eq(self.refetched + (out_tag.plane == LSB))]
            with m.If(prob.valid & prob.ready & ~in_row & ~current):
                m.d.sync += self.squashed.eq(self.squashed + 1)
            with m.If(active):
                m.d.sync += self.cycles.eq(self.cycles + 1)
        return m
