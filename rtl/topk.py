"""SpAtten's top-k engine, pipelined over a stream of vectors and bounded in the worst case.

Three stages work on three vector slots of one buffer memory at once, so receiving vector
``i+2`` overlaps selecting ``i+1`` and emitting ``i``:

1. **Receive** ``lanes`` scores per beat into a free slot, and while they stream past,
   histogram their top digit (``radix_bits`` bits of the order-preserving key) with ``≥``
   comparator arrays: bucket ``b`` counts the scores whose digit is ``≥ b``.
2. **Select** the k-th largest value digit by digit. A pass reads ``comparators``
   candidates per cycle, keeps those whose resolved digits match (the zero eliminator
   compacts them into the ping-pong candidate FIFO), and histograms their next digit.
   This replaces the paper's random pivot by ``2**radix_bits``-way partitions on the key
   bits: every pass fixes ``radix_bits`` bits, so a vector takes at most ``levels - 1``
   passes, each over at most N candidates, whatever the input. The select ends early when
   the picked bucket holds exactly the rank still wanted, or when a pass's candidates are
   all equal (checked on the words it compacts): ties and repeated values cost fewer passes.
3. **Emit**: read the slot ``comparators`` scores per cycle, keep every score greater than
   the k-th largest value and the earliest ties until k are kept (the tie counter), compact
   with a third zero eliminator, and pack into beats of ``lanes`` (value, index) pairs in
   input order.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..configs.topk import TopKConfig
from .stream import vector_beat
from .compact import Packer, ZeroEliminator, popcount, prefix_counts, wires
from .pipeline import enable_copies, held_copies, one_hot_mux
from .ram import block_ram, read

__all__ = ["TopK", "input_beat", "output_beat"]

FREE, RECEIVED, SELECTED = 0, 1, 2

#: Copies of the flag that loads the select pass's histogram counters (a share each).
HIST_COPIES = 4
#: Copies of the select pass's lane-wide controls (digit selects, resolved digit), a lane group each.
LANE_COPIES = 4
#: The users of the rank still wanted, each with a copy of it: COMPARE's ">=" compares, its
#: exact-rank compares, its rank subtractions.
K_LEFT_USES = ("compare", "exact", "rank")


def input_beat(cfg):
    """``lanes`` scores; ``k`` (read on a vector's first beat); ``last`` ends the vector."""
    return vector_beat(cfg.lanes, signed(cfg.width), name="scores", k=unsigned(cfg.count_bits))


def output_beat(cfg):
    """Up to ``lanes`` selected scores with their indices, in input order; ``count`` valid."""
    return data.StructLayout({
        "values": data.ArrayLayout(signed(cfg.width), cfg.lanes),
        "indices": data.ArrayLayout(unsigned(cfg.index_bits), cfg.lanes),
        "count": unsigned(cfg.lanes.bit_length()),
        "last": 1,
    })


def _key(cfg, value):
    """The order-preserving unsigned key of a signed score: sign bit flipped, zero-padded."""
    pad = cfg.key_bits - cfg.width
    return Cat(Const(0, pad), value[:cfg.width - 1], ~value[cfg.width - 1]) if pad else \
        Cat(value[:cfg.width - 1], ~value[cfg.width - 1])


def _digits(cfg, key):
    """The digits of a key, most significant first."""
    return [key[(cfg.levels - j) * cfg.radix_bits:][:cfg.radix_bits] for j in range(1, cfg.levels + 1)]


def _select_digit(cfg, key, one_hot):
    """The digit of ``key`` that the registered ``one_hot`` (bit j-1 for digit j) picks."""
    return one_hot_mux(list(one_hot), _digits(cfg, key))


class TopK(wiring.Component):
    """The top-k engine.

    Parameters
    ----------
    config : TopKConfig

    Attributes
    ----------
    i : In(stream) of :func:`input_beat`
        Scores, ``lanes`` per beat. ``k`` is read on the first beat of each vector and
        clamped to ``[1, N]``; ``last`` marks the final beat. A vector reaching ``n_max``
        scores ends there even without ``last``.
    o : Out(stream) of :func:`output_beat`
        The selected scores and their indices in input order, ``lanes`` per beat (the last
        beat of a vector may hold fewer; ``count`` says how many), ``last`` on the final beat.
    """

    def __init__(self, config=TopKConfig()):
        if not isinstance(config, TopKConfig):
            raise TypeError(f"config must be a TopKConfig, not {config!r}")
        self.config = config
        super().__init__({
            "i": In(stream.Signature(input_beat(config))),
            "o": Out(stream.Signature(output_beat(config))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        W, L, C, B = cfg.width, cfg.lanes, cfg.comparators, cfg.buckets
        groups = C // L
        word_bits = exact_log2(cfg.words)
        count = unsigned(cfg.count_bits)
        word_shape = data.ArrayLayout(signed(W), C)

        # Three vector slots in one buffer: slot s holds words s*words .. s*words+words-1.
        # Each stage reads and writes only the slot it owns (a read port's address may point
        # at another slot while its data is unused), so no read that meets a write is used.
        # The reads (rtl/ram.py) are registered twice: the block RAM's read register, then
        # its output register, which is what the fabric sees.
        buffer = block_ram(m, "buffer", shape=word_shape, depth=3 * cfg.words)
        receive_port = buffer.write_port(granularity=L)
        # Ping-pong candidate FIFOs of the select passes, one memory: a pass reads one half
        # while it writes the other.
        fifo = block_ram(m, "fifo", shape=word_shape, depth=2 * cfg.words)
        fifo_write = fifo.write_port()

        # Per-slot state, written by the stage that owns the slot.
        state = Array(Signal(2, name=f"slot{s}_state") for s in range(3))
        slot_n = Array(Signal(count, name=f"slot{s}_n") for s in range(3))
        slot_k = Array(Signal(count, name=f"slot{s}_k") for s in range(3))
        slot_hist = Array(Array(Signal(count, name=f"slot{s}_ge{b}") for b in range(1, B))
                          for s in range(3))
        slot_last_word = Array(Signal(range(cfg.words), name=f"slot{s}_last_word") for s in range(3))
        slot_tail = Array(Signal(range(C + 1), name=f"slot{s}_tail") for s in range(3))  # lanes in the last word
        slot_threshold = Array(Signal(cfg.key_bits, name=f"slot{s}_threshold") for s in range(3))
        slot_ties = Array(Signal(count, name=f"slot{s}_ties") for s in range(3))

        def next_slot(slot):
            return Mux(slot == 2, 0, slot + 1)

        # ---- Stage 1: receive, histogram of the top digit ----------------------------
        recv_slot = Signal(range(3))
        recv_beat = Signal(range(cfg.n_max // L))
        first = recv_beat == 0
        ends = self.i.payload.last | (recv_beat == cfg.n_max // L - 1)
        m.d.comb += self.i.ready.eq(state[recv_slot] == FREE)
        accept = self.i.valid & self.i.ready
        m.d.comb += [
            receive_port.addr.eq(Cat((recv_beat >> exact_log2(groups))[:word_bits], recv_slot)),
            receive_port.en.eq(Mux(accept, 1 << (recv_beat % groups if groups > 1 else 0), 0)),
        ]
        for g in range(groups):
            for lane in range(L):
                m.d.comb += receive_port.data[g * L + lane].eq(self.i.payload.scores[lane])
        # k is clamped to [1, N] here, as the vector ends (so the select loads it through
        # the slot multiplexer alone: the clamp's compare there was a worst path at d6ea1aa).
        recv_k = Signal(count)                     # k of the vector being received
        k_now = Mux(first, self.i.payload.k, recv_k)
        n_now = (recv_beat + 1) * L
        with m.If(accept):
            with m.If(first):
                m.d.sync += recv_k.eq(self.i.payload.k)
            with m.If(ends):
                m.d.sync += [
                    slot_k[recv_slot].eq(Mux(k_now == 0, 1, Mux(k_now > n_now, n_now, k_now))),
                    slot_n[recv_slot].eq(n_now),
                    slot_last_word[recv_slot].eq(recv_beat >> exact_log2(groups)),
                    slot_tail[recv_slot].eq(((recv_beat % groups if groups > 1 else 0) + 1) * L),
                    recv_slot.eq(next_slot(recv_slot)),
                    recv_beat.eq(0),
                ]
            with m.Else():
                m.d.sync += recv_beat.eq(recv_beat + 1)

        # The histogram runs one cycle behind the handshake: the beat's "digit >= b" counts
        # are registered, then added into the slot's own counters (no slot multiplexer on
        # the adders' path); the slot becomes RECEIVED when its last counts are in.
        top_digits = wires(m, [_digits(cfg, _key(cfg, self.i.payload.scores[lane]))[0]
                               for lane in range(L)], "top_digit")
        seen = [Signal(range(L + 1), name=f"seen_ge{b}") for b in range(1, B)]
        seen_valid, seen_first, seen_ends = Signal(), Signal(), Signal()
        seen_slot = Signal(range(3))
        m.d.sync += [seen_valid.eq(accept), seen_first.eq(first), seen_ends.eq(ends),
                     seen_slot.eq(recv_slot)]
        m.d.sync += [seen[b - 1].eq(popcount(Cat(digit >= b for digit in top_digits)))
                     for b in range(1, B)]
        for slot in range(3):
            with m.If(seen_valid & (seen_slot == slot)):
                for b in range(1, B):
                    counter = slot_hist[slot][b - 1]
                    m.d.sync += counter.eq(Mux(seen_first, 0, counter) + seen[b - 1])
                with m.If(seen_ends):
                    m.d.sync += state[slot].eq(RECEIVED)

        # ---- Stage 2: select the k-th largest key, radix_bits per pass ---------------
        # IDLE loads the slot's top-digit histogram; each RESOLVE (two cycles: parallel
        # ">= k" compares, then a one-hot pick) fixes one digit; each pass between two
        # resolves reads the candidates, histograms the next digit and keeps the matches.
        # The first pass reads the whole slot, whatever the top digit, so its reads start
        # with the top digit's resolve (FIRST_PASS_OVERLAP cycles early): the resolved
        # digit is first needed three cycles after a read. A resolve that ends the select
        # there drops those reads.
        sel_slot = Signal(range(3))
        level = Signal(range(cfg.levels + 1))      # the digit being resolved
        digit_now = Signal(cfg.levels)             # one-hot: the digit a pass histograms (= level)
        digit_before = Signal(cfg.levels)          # one-hot: the digit a pass matches (level - 1)
        threshold = Signal(cfg.key_bits)           # resolved digits so far
        # The rank still wanted among candidates, loaded in IDLE and PICK, in three copies
        # (K_LEFT_USES): k_left's fan-out to all of COMPARE's compares and subtractions was
        # a worst path at d6ea1aa and 3fa0788 (seed 1, 7.3 and 8.5 ns of routing).
        k_left_load = Signal()
        k_left_next = Signal(count)
        k_left_bits = [held_copies(m, f"k_left_bit{j}_copy", len(K_LEFT_USES), load=k_left_load,
                                   value=k_left_next[j]) for j in range(cfg.count_bits)]
        k_left = {use: Cat(bit[n] for bit in k_left_bits) for n, use in enumerate(K_LEFT_USES)}
        source_count = Signal(count)               # candidates the pass reads
        in_bucket = Signal(count)                  # candidates matching all resolved digits
        hist = [Signal(count, name=f"ge{b}") for b in range(1, B)]
        scanning = Signal()                        # a pass's reads are being issued
        scan_word = Signal(range(cfg.words + 1))
        scan_end = Signal(range(cfg.words))        # the pass's last word
        wait = Signal(range(cfg.PASS_DRAIN + 1))   # drain cycles left after a pass's last read
        k_wanted, n_here = slot_k[sel_slot], slot_n[sel_slot]

        buffer_word = read(m, "select", buffer, addr=Cat(scan_word[:word_bits], sel_slot), en=1,
                           platform=platform, writes=[receive_port], registers=2)
        fifo_word_read = read(m, "fifo", fifo, addr=Cat(scan_word[:word_bits], ~level[0]),  # FIFO (level-1) % 2
                              en=1, platform=platform, writes=[fifo_write], registers=2)
        read_valid = Signal()          # the source's data port holds a word this cycle
        read_word = Signal(range(cfg.words))
        read_last = Signal()
        read_first = Signal()
        m.d.sync += [read_valid.eq(0), read_last.eq(0)]
        with m.If(scanning):
            m.d.sync += [
                scan_word.eq(scan_word + 1),
                read_valid.eq(1),
                read_word.eq(scan_word),
                read_last.eq(scan_word == scan_end),
                read_first.eq(scan_word == 0),
            ]
            with m.If(scan_word == scan_end):
                m.d.sync += [
                    scanning.eq(0),
                    wait.eq(Mux(level == cfg.levels, cfg.LAST_PASS_DRAIN, cfg.PASS_DRAIN)),
                ]
        with m.Elif(wait != 0):
            m.d.sync += wait.eq(wait - 1)

        # COMPARE registers, for every bucket b at once, the one-hot pick (b when ">= b"
        # reaches k_left and ">= b+1" does not), the bucket's population and the rank left if
        # b is picked; PICK then only multiplexes (the subtractions after the pick's
        # multiplexer, and a popcount for the bucket's number, were critical paths).
        counts = [in_bucket, *hist, Const(0, cfg.count_bits)]
        compares = [Const(1, 1), *(h >= k_left["compare"] for h in hist), Const(0, 1)]
        picked = Signal(B)
        populations = [Signal(count, name=f"population{b}") for b in range(B)]
        ranks_left = [Signal(count, name=f"rank_left{b}") for b in range(B)]
        bucket = Signal(cfg.radix_bits)            # the picked bucket's number, from the one-hot
        m.d.comb += bucket.eq(one_hot_mux(picked, range(B)))
        rank_left = one_hot_mux(picked, ranks_left)

        # Whether a pass's candidates are all equal, and their value (from its compacted words, below).
        pass_uniform = Signal()
        pass_value = Signal(signed(W))
        pass_first = Signal(init=1)    # the next compacted word is a pass's first
        pass_started = Signal()        # the pass has seen a candidate (pass_value holds it)
        finish = Signal()              # COMPARE: the pick ends the select (see below)
        uniform = Signal()             # COMPARE: the pass's candidates are all equal
        new_threshold = Signal(cfg.key_bits)
        for j in range(1, cfg.levels + 1):
            with m.If(level == j):
                m.d.comb += new_threshold.eq(threshold | (bucket << ((cfg.levels - j) * cfg.radix_bits)))

        select_done = Signal()         # PICK ends the select: the slot is SELECTED
        with m.FSM(name="select") as select_fsm:
            with m.State("IDLE"):
                # Loads every cycle, so only the state change waits for the slot (its
                # counts are final when it turns RECEIVED): the slot's state is not on the
                # enables of the registers loaded.
                m.d.comb += [k_left_load.eq(1), k_left_next.eq(k_wanted)]   # clamped as received
                m.d.sync += [
                    in_bucket.eq(n_here),
                    level.eq(1),
                    digit_now.eq(1),
                    digit_before.eq(0),
                    threshold.eq(0),
                    source_count.eq(n_here),            # the first pass reads the whole slot
                    scan_word.eq(0),
                    scan_end.eq(slot_last_word[sel_slot]),
                ]
                with m.If(state[sel_slot] == RECEIVED):
                    m.d.sync += scanning.eq(1)
                    m.next = "COMPARE"
            with m.State("PASS"):
                with m.If(~scanning & (wait == 1)):
                    m.next = "COMPARE"
            with m.State("COMPARE"):
                # The select ends after the last digit, or early: when the picked bucket
                # holds exactly the rank still wanted (all of it is kept, so its lowest key
                # is a threshold that keeps exactly k with the bucket's population as tie
                # budget), or when a pass's candidates are all equal (their value is the
                # k-th largest; known from the words a pass compacts for the FIFO, so not
                # after the last pass, which writes none).
                all_equal = (level >= 2) & (level != cfg.levels) & pass_uniform
                # The picked bucket p is the last with counts[p] >= k_left, and counts fall
                # with b, so counts[p] == k_left exactly when some counts[b] == k_left: no
                # ">=" compare on the path to ``finish`` (seed 3 of 38e7a35's build had one).
                exact = Cat(count_b == k_left["exact"] for count_b in counts[:B])
                m.d.sync += [
                    uniform.eq(all_equal),
                    finish.eq((level == cfg.levels) | all_equal | exact.any()),
                    picked.eq(Cat(compares[b] & ~compares[b + 1] for b in range(B))),
                    *(population.eq(counts[b] - counts[b + 1]) for b, population in enumerate(populations)),
                    *(rank.eq(k_left["rank"] - counts[b + 1]) for b, rank in enumerate(ranks_left)),
                ]
                m.next = "PICK"
            with m.State("PICK"):
                m.d.comb += [k_left_load.eq(1), k_left_next.eq(rank_left)]
                m.d.sync += [
                    threshold.eq(new_threshold),
                    in_bucket.eq(one_hot_mux(picked, populations)),
                    source_count.eq(in_bucket),
                    level.eq(level + 1),
                    digit_now.eq(digit_now << 1),
                    digit_before.eq(digit_now),
                ]
                with m.If(finish):
                    m.d.comb += select_done.eq(1)
                    m.d.sync += [
                        slot_threshold[sel_slot].eq(Mux(uniform, _key(cfg, pass_value), new_threshold)),
                        slot_ties[sel_slot].eq(rank_left),
                        state[sel_slot].eq(SELECTED),
                        sel_slot.eq(next_slot(sel_slot)),
                    ]
                    m.next = "IDLE"
                with m.Else():
                    with m.If(level != 1):              # the first pass is reading already
                        m.d.sync += [
                            scanning.eq(1),
                            scan_word.eq(0),
                            scan_end.eq((in_bucket - 1) >> exact_log2(C)),
                        ]
                    m.next = "PASS"
        with m.If(select_done):
            # the select ended at the top digit: drop the first pass's reads
            m.d.sync += [scanning.eq(0), read_valid.eq(0), wait.eq(0)]

        # The pass datapath: source word -> register -> digits -> candidate and ">= b" masks ->
        # histogram and compaction into the other FIFO. ``level`` is the digit being
        # histogrammed during a pass (resolved digits: 1 .. level-1).
        # Both sources' words are registered straight off the block RAMs (a multiplexer after
        # a DP16KD's 5.8 ns clock-to-out was the engine's worst path) and chosen after.
        fetched_valid = Signal()
        fetched_last = Signal()
        fetched_first = Signal()
        fetched_present = Signal(range(C + 1))      # leading lanes that hold candidates
        from_buffer = Signal()                      # the pass reads the vector's slot (level 2)
        remaining = source_count - read_word * C
        m.d.sync += [
            fetched_valid.eq(read_valid),
            fetched_last.eq(read_last),
            fetched_first.eq(read_first),
            from_buffer.eq(level <= 2),             # the first pass (level 2, or 1 while it resolves)
            fetched_present.eq(Mux(remaining > C, C, remaining)),
        ]
        with m.If(select_done):
            m.d.sync += fetched_valid.eq(0)         # a dropped read of the first pass
        fetched = Signal(word_shape)
        m.d.comb += fetched.eq(Mux(from_buffer, buffer_word.as_value(), fifo_word_read.as_value()))
        # digits: each lane's matched and histogrammed digits, picked by the one-hot
        # selects (which fan out to every lane) in a cycle of their own.
        keys = wires(m, [_key(cfg, fetched[lane]) for lane in range(C)], "key")
        digits_valid = Signal()
        digits_last = Signal()
        digits_first = Signal()
        digits_values = Signal(word_shape)
        digits_present = Signal(C)
        previous_digits = [Signal(cfg.radix_bits, name=f"previous_digit{lane}") for lane in range(C)]
        current_digits = [Signal(cfg.radix_bits, name=f"digit{lane}") for lane in range(C)]
        m.d.sync += [
            digits_valid.eq(fetched_valid), digits_last.eq(fetched_last), digits_values.eq(fetched),
            digits_first.eq(fetched_first),
            digits_present.eq(Cat(lane < fetched_present for lane in range(C))),
        ]
        # The registers that steer every lane (the one-hot digit selects, loaded in IDLE and
        # PICK, and the last resolved digit, loaded in PICK) in LANE_COPIES copies, each
        # driving a group of lanes: one register's fan-out to every lane was the worst path
        # at 9b42129 (seed 1: digit_before, 10.4 ns of routing) and, with the digit selects
        # copied, at seeds 2 and 3 (the resolved digit, 4.4 and 5.2 ns in one hop).
        idle, pick = select_fsm.ongoing("IDLE"), select_fsm.ongoing("PICK")
        copies = min(LANE_COPIES, C)

        def lane_copies(name, value, load):
            bits = [held_copies(m, f"{name}_bit{j}_copy", copies, load=load, value=value[j])
                    for j in range(len(value))]
            return [Cat(bit[c] for bit in bits) for c in range(copies)]
        now_copies = lane_copies("digit_now", Mux(idle, 1, digit_now << 1)[:cfg.levels], idle | pick)
        before_copies = lane_copies("digit_before", Mux(idle, 0, digit_now), idle | pick)
        matched_copies = lane_copies("matched", bucket, pick)      # the last resolved digit
        for lane, key in enumerate(keys):
            m.d.sync += [
                previous_digits[lane].eq(_select_digit(cfg, key, before_copies[lane * copies // C])),
                current_digits[lane].eq(_select_digit(cfg, key, now_copies[lane * copies // C])),
            ]
        masks_valid = Signal()
        masks_last = Signal()
        masks_first = Signal()
        masks_values = Signal(word_shape)
        candidate = Signal(C)
        at_least = [Signal(C, name=f"mask_ge{b}") for b in range(1, B)]
        m.d.sync += [masks_valid.eq(digits_valid), masks_last.eq(digits_last), masks_values.eq(digits_values),
                     masks_first.eq(digits_first)]
        for lane in range(C):
            matched = matched_copies[lane * copies // C]
            is_candidate = wires(m, [digits_present[lane] & (previous_digits[lane] == matched)],
                                 f"candidate{lane}_")[0]
            m.d.sync += candidate[lane].eq(is_candidate)
            for b in range(1, B):
                m.d.sync += at_least[b - 1][lane].eq(is_candidate & (current_digits[lane] >= b))
        # The counters: loaded with the slot's top-digit histogram while the FSM is IDLE (under
        # HIST_COPIES flags of their own, each enabling a share of the counters: the FSM's
        # state drove all of them), restarted by each pass's first word, stepped by each
        # word's popcounts a cycle after its masks (mask -> popcount -> adder was one path).
        steps_valid, steps_first = Signal(), Signal()
        steps = [Signal(range(C + 1), name=f"step_ge{b}") for b in range(1, B)]
        m.d.sync += [steps_valid.eq(masks_valid), steps_first.eq(masks_first),
                     *(step.eq(popcount(mask)) for step, mask in zip(steps, at_least))]
        loading = enable_copies(m, "hist_loading", min(HIST_COPIES, B - 1),
                                if_enabled=state[sel_slot] != RECEIVED, if_stalled=select_done)
        for b in range(1, B):
            counter = hist[b - 1]
            with m.If(loading[(b - 1) * len(loading) // (B - 1)]):
                m.d.sync += counter.eq(slot_hist[sel_slot][b - 1])
            with m.If(steps_valid):
                m.d.sync += counter.eq(Mux(steps_first, 0, counter) + steps[b - 1])

        m.submodules.fifo_eliminator = fifo_eliminator = ZeroEliminator(signed(W), C)
        m.submodules.fifo_packer = fifo_packer = Packer(signed(W), C, C, always_ready=True)
        fifo_word = Signal(range(cfg.words))
        m.d.comb += [
            fifo_eliminator.i.valid.eq(masks_valid & (level != cfg.levels)),
            fifo_eliminator.i.payload.data.eq(masks_values),
            fifo_eliminator.i.payload.keep.eq(candidate),
            fifo_eliminator.i.payload.last.eq(masks_last),
            fifo_packer.o.ready.eq(1),
            fifo_write.addr.eq(Cat(fifo_word[:word_bits], level[0])),
            fifo_write.data.eq(fifo_packer.o.payload.data),
            fifo_write.en.eq(fifo_packer.o.valid),
        ]
        wiring.connect(m, fifo_eliminator.o, fifo_packer.i)
        with m.If(fifo_packer.o.valid):
            m.d.sync += fifo_word.eq(Mux(fifo_packer.o.payload.last, 0, fifo_word + 1))
        # Whether the pass's candidates are all equal, checked on the compacted words the zero
        # eliminator gives the packer: each word's candidates against its first, and that one
        # against the pass's first (``pass_value``; a multiplexer choosing the reference of
        # every lane's compare was a critical path). The compares are registered, then AND-ed
        # into the flag: complete one cycle after the eliminator, before the packer (three
        # cycles) writes the FIFO, so within PASS_DRAIN; a pass but the last (the only kind
        # that writes the FIFO) knows it at its COMPARE.
        compacted = fifo_eliminator.o.payload
        has_reference = pass_started & ~pass_first
        lanes_same = Signal(C - 1)
        head_same = Signal()           # the word's first candidate equals the pass's (or is its first)
        lanes_valid, lanes_first = Signal(), Signal()
        m.d.sync += [
            lanes_valid.eq(fifo_eliminator.o.valid),
            lanes_first.eq(pass_first),
            lanes_same.eq(Cat((lane >= compacted.count) | (compacted.data[lane] == compacted.data[0])
                              for lane in range(1, C))),
            head_same.eq((compacted.count == 0) | ~has_reference | (compacted.data[0] == pass_value)),
        ]
        with m.If(fifo_eliminator.o.valid & ~has_reference):
            m.d.sync += pass_value.eq(compacted.data[0])
        with m.If(fifo_eliminator.o.valid):
            m.d.sync += [
                pass_started.eq(has_reference | (compacted.count != 0)),
                pass_first.eq(compacted.last),
            ]
        with m.If(lanes_valid):
            m.d.sync += pass_uniform.eq((lanes_first | pass_uniform) & lanes_same.all() & head_same)

        # ---- Stage 3: emit in input order ---------------------------------------------
        # read (the block RAM's read register) -> fetched (its output register: no logic
        # after the RAM's clock-to-out) -> landed (a fabric register) -> compared (> and = the
        # k-th value) -> classified (ties before each lane) -> decided (the kept lanes) -> zero
        # eliminator -> a FIFO of compacted beats -> packer. Nothing before the
        # FIFO ever stalls: a word is read only with a credit, one per FIFO entry, returned
        # when the packer takes the entry. So no ready signal crosses the pipeline.
        # Each word carries its lanes present (a mask) and its vector's tie budget; its
        # vector's threshold travels beside it, in lane-group copies.
        entry = data.StructLayout({"value": signed(W), "index": unsigned(cfg.index_bits)})
        word_info = data.StructLayout({
            "word": range(cfg.words), "present": C, "first": 1, "last": 1, "ties": count,
        })
        # The hand-over: a SELECTED slot's parameters are copied into the emit registers the
        # cycle before its first read, so the read control below sees registers only (the
        # slot multiplexers fed it directly and were the engine's critical path).
        emit_slot = Signal(range(3))
        emitting = Signal()            # words of emit_slot are being read
        emit_word = Signal(range(cfg.words))
        emit_first = Signal()          # emit_word is the vector's first word
        emit_final = Signal()          # emit_word is the vector's last word
        emit_last_word = Signal(range(cfg.words))
        emit_tail = Signal(C)          # the last word's lanes present, a mask
        emit_threshold = Signal(signed(W))
        emit_ties = Signal(count)
        credits = Signal(range(cfg.EMIT_FIFO_DEPTH + 1), init=cfg.EMIT_FIFO_DEPTH)

        m.submodules.eliminator = eliminator = ZeroEliminator(entry, C)
        m.submodules.emit_fifo = emit_fifo = SyncFIFOBuffered(
            width=Shape.cast(eliminator.o.payload.shape()).width, depth=cfg.EMIT_FIFO_DEPTH)
        m.submodules.packer = packer = Packer(entry, C, L, depth=cfg.emit_packer_depth, output_register=True)

        pad = cfg.key_bits - W
        with m.If(~emitting):           # loads while idle; only ``emitting`` waits for the slot
            key = slot_threshold[emit_slot]
            m.d.sync += [
                emitting.eq(state[emit_slot] == SELECTED),
                emit_word.eq(0),
                emit_first.eq(1),
                emit_final.eq(slot_last_word[emit_slot] == 0),
                emit_last_word.eq(slot_last_word[emit_slot]),
                emit_tail.eq(Cat(lane < slot_tail[emit_slot] for lane in range(C))),
                emit_threshold.eq(Cat(key[pad:pad + W - 1], ~key[cfg.key_bits - 1])),
                emit_ties.eq(slot_ties[emit_slot]),
            ]
        issue = (credits != 0) & emitting
        popped = emit_fifo.r_rdy & emit_fifo.r_en
        m.d.sync += credits.eq(credits - issue + popped)
        landed_values = read(m, "emit", buffer, addr=Cat(emit_word[:word_bits], emit_slot), en=1,
                             platform=platform, writes=[receive_port], registers=3)
        read_info = Signal(word_info)
        read_full = Signal()
        m.d.sync += [
            read_full.eq(issue),
            read_info.word.eq(emit_word),
            read_info.present.eq(Mux(emit_final, emit_tail, (1 << C) - 1)),
            read_info.first.eq(emit_first),
            read_info.last.eq(emit_final),
            read_info.ties.eq(emit_ties),
        ]
        read_threshold = Signal(signed(W))
        m.d.sync += read_threshold.eq(emit_threshold)
        with m.If(issue):
            m.d.sync += [
                emit_word.eq(emit_word + 1),
                emit_first.eq(0),
                emit_final.eq(emit_word + 1 == emit_last_word),
            ]
            with m.If(emit_final):
                m.d.sync += [
                    emitting.eq(0),
                    state[emit_slot].eq(FREE),
                    emit_slot.eq(next_slot(emit_slot)),
                ]

        fetch = Signal(word_info)
        fetch_full = Signal()
        fetch_threshold = Signal(signed(W))
        m.d.sync += [fetch_full.eq(read_full), fetch.eq(read_info), fetch_threshold.eq(read_threshold)]
        # landed: the word in a fabric register behind the block RAM's output register, so the
        # compares start from flip-flops beside them (the RAM → compare route was the worst
        # path at fd7c92e seed 1, d6ea1aa and f312867 seed 2, 3fa0788 seed 3). The threshold in
        # LANE_COPIES copies, a lane group each: one register's fan-out to all 2·C compares
        # was the worst path at 192dc0e (seed 1, 4.2 ns of routing).
        landed = Signal(word_info)
        landed_full = Signal()
        m.d.sync += [landed_full.eq(fetch_full), landed.eq(fetch)]
        thresholds = [copy.as_signed() for copy in lane_copies("landed_threshold", fetch_threshold, fetch_full)]

        # compared: each lane against the threshold (> and =), nothing else in the cycle.
        compared = Signal(word_info)
        compared_full = Signal()
        compared_values = Signal(word_shape)
        compared_greater = Signal(C)
        compared_equal = Signal(C)
        m.d.sync += [compared_full.eq(landed_full), compared.eq(landed), compared_values.eq(landed_values)]
        for lane in range(C):
            threshold_here = thresholds[lane * copies // C]
            m.d.sync += [
                compared_greater[lane].eq(landed.present[lane] & (landed_values[lane] > threshold_here)),
                compared_equal[lane].eq(landed.present[lane] & (landed_values[lane] == threshold_here)),
            ]

        # classified: the ties before each lane (a prefix sum of the equal lanes).
        classed = Signal(word_info)
        classed_full = Signal()
        classed_values = Signal(word_shape)
        greater = Signal(C)
        equal = Signal(C)
        ties_before = [Signal(count, name=f"ties_before{lane}") for lane in range(C)]
        equal_count = Signal(range(C + 1))     # the word's ties, for the tie counter
        m.d.sync += [
            classed_full.eq(compared_full), classed.eq(compared), classed_values.eq(compared_values),
            greater.eq(compared_greater), equal.eq(compared_equal),
            equal_count.eq(popcount(compared_equal)),
        ]
        for lane, before in enumerate(prefix_counts(m, list(compared_equal), "ties")):
            m.d.sync += ties_before[lane].eq(before)

        # decided: which lanes are kept (the tie counter admits the earliest ties).
        ties_left = Signal(count)
        ties_here = Mux(classed.first, classed.ties, ties_left)
        decided = Signal(word_info)
        decided_full = Signal()
        decided_values = Signal(word_shape)
        decided_keep = Signal(C)
        m.d.sync += [
            decided_full.eq(classed_full),
            decided.eq(classed),
            decided_values.eq(classed_values),
            decided_keep.eq(Cat(greater[lane] | (equal[lane] & (ties_before[lane] < ties_here))
                                for lane in range(C))),
        ]
        m.d.comb += [
            eliminator.i.valid.eq(decided_full),
            eliminator.i.payload.keep.eq(decided_keep),
            eliminator.i.payload.last.eq(decided.last),
            eliminator.o.ready.eq(1),
            emit_fifo.w_en.eq(eliminator.o.valid),
            emit_fifo.w_data.eq(eliminator.o.payload),
            packer.i.valid.eq(emit_fifo.r_rdy),
            packer.i.payload.eq(emit_fifo.r_data),
            emit_fifo.r_en.eq(packer.i.ready),
        ]
        for lane in range(C):
            m.d.comb += [
                eliminator.i.payload.data[lane].value.eq(decided_values[lane]),
                eliminator.i.payload.data[lane].index.eq(decided.word * C + lane),
            ]
        with m.If(classed_full):
            # one subtraction; its borrow says the word used up the remaining ties
            left = Signal(signed(cfg.count_bits + 1), name="ties_minus_seen")
            m.d.comb += left.eq(ties_here - equal_count)
            m.d.sync += ties_left.eq(Mux(left < 0, 0, left[:cfg.count_bits]))
        m.d.comb += [
            self.o.valid.eq(packer.o.valid),
            packer.o.ready.eq(self.o.ready),
            self.o.payload.count.eq(packer.o.payload.count),
            self.o.payload.last.eq(packer.o.payload.last),
        ]
        for lane in range(L):
            m.d.comb += [
                self.o.payload.values[lane].eq(packer.o.payload.data[lane].value),
                self.o.payload.indices[lane].eq(packer.o.payload.data[lane].index),
            ]
        return m
