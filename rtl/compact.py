"""Zero eliminators and packers: compaction of sparse beats into dense ones.

SpAtten's zero eliminator (§IV-C) compacts the kept elements of a beat to its front: a
prefix sum counts, for each element, the dropped elements before it, and ``log2(width)``
shifter layers move an element left by ``2**r`` when bit ``r`` of that count is set
(collision-free, order-preserving). The :class:`Packer` then joins compacted beats into
full output words, so a FIFO or an output stream carries no holes.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

__all__ = ["sparse_beat", "dense_beat", "ZeroEliminator", "Packer", "popcount", "prefix_counts", "rotate", "wires"]


def popcount(bits):
    """Sum of the bits of ``bits`` (a Value), as a balanced adder tree."""
    terms = [bits[i] for i in range(len(bits))]
    if not terms:
        return Const(0, 1)
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


def prefix_counts(m, bits, name="prefix"):
    """Exclusive prefix sums of 1-bit ``bits``: entry ``n`` counts the set bits before ``n``.

    A Kogge-Stone tree of ``log2(len)`` adder levels (not a ripple of ``len`` adders), each
    level named so the netlist shares it.
    """
    sums = [Value.cast(bit) for bit in bits]
    step, level = 1, 0
    while step < len(sums):
        sums = wires(m, [sums[n] + sums[n - step] if n >= step else sums[n]
                         for n in range(len(sums))], f"{name}_l{level}_")
        step, level = step * 2, level + 1
    # inclusive -> exclusive
    return [Const(0, 1)] + sums[:-1]


def sparse_beat(elem_shape, width):
    """A beat of ``width`` elements with a ``keep`` mask, ending in ``last``."""
    return data.StructLayout({
        "data": data.ArrayLayout(elem_shape, width),
        "keep": width,
        "last": 1,
    })


def dense_beat(elem_shape, width):
    """A beat whose first ``count`` elements are valid, ending in ``last``."""
    return data.StructLayout({
        "data": data.ArrayLayout(elem_shape, width),
        "count": unsigned(ceil_log2(width + 1)),
        "last": 1,
    })


def wires(m, values, name):
    """Name each of ``values`` with a combinational Signal, so later uses share one net."""
    named = []
    for n, value in enumerate(values):
        value = Value.cast(value)
        wire = Signal(value.shape(), name=f"{name}{n}")
        m.d.comb += wire.eq(value)
        named.append(wire)
    return named


def rotate(m, values, amount, *, left, name="rot"):
    """Rotate ``values`` (as raw bits of equal width) by a run-time ``amount``: a barrel shifter.

    ``amount`` may also be a list with one (equal) amount per output position, copies of
    one register that split its fan-out. Returns unsigned Signals of the common width,
    whatever the shapes passed in.
    """
    size = len(values)
    amounts = [Value.cast(a) for a in amount] if isinstance(amount, (list, tuple)) \
        else [Value.cast(amount)] * size
    values = [Value.cast(value).as_unsigned() for value in values]
    widths = {len(value) for value in values}
    if len(widths) != 1:
        raise ValueError(f"rotate() needs values of one width, not {sorted(widths)}")
    for r in range(min(ceil_log2(size), len(amounts[0]))):
        step = 1 << r
        values = wires(m, [Mux(amounts[n][r], values[(n + step) % size] if left else values[(n - step) % size],
                               values[n]) for n in range(size)], f"{name}_l{r}_")
    return values


class ZeroEliminator(wiring.Component):
    """Compact the kept elements of each beat to its front, in order.

    Three register stages: the prefix sum of dropped elements, then the shifter layers in
    two halves (``log2(width)`` layers in one cycle were the engine's critical path).

    Parameters
    ----------
    elem_shape : shape-like
        One element (a value, or a struct of value and index).
    width : int
        Elements per beat, a power of two.

    Attributes
    ----------
    i : In(stream) of :func:`sparse_beat`
    o : Out(stream) of :func:`dense_beat`
    """

    def __init__(self, elem_shape, width):
        exact_log2(width)
        self._elem_shape = elem_shape
        self._width = width
        super().__init__({
            "i": In(stream.Signature(sparse_beat(elem_shape, width))),
            "o": Out(stream.Signature(dense_beat(elem_shape, width))),
        })

    def elaborate(self, platform):
        m = Module()
        width = self._width
        shift_bits = max(1, ceil_log2(width))
        advance = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(advance)

        # Stage 1: the number of dropped elements before each element, and the count.
        stage1 = Signal(sparse_beat(self._elem_shape, width))
        stage1_valid = Signal()
        shifts = [Signal(shift_bits, name=f"shift{n}") for n in range(width)]
        count = Signal(ceil_log2(width + 1))
        with m.If(advance):
            m.d.sync += [stage1.eq(self.i.payload), stage1_valid.eq(self.i.valid)]
            dropped = prefix_counts(m, ~self.i.payload.keep, "dropped")
            for n in range(width):
                m.d.sync += shifts[n].eq(dropped[n])
            m.d.sync += count.eq(popcount(self.i.payload.keep))

        # Stages 2 and 3: layer r moves an element left by 2**r when bit r of its shift is
        # set; the first half of the layers, a register, then the rest.
        lanes = [(stage1.keep[n], stage1.data[n], shifts[n]) for n in range(width)]
        valid, last, count_now = stage1_valid, stage1.last, count
        layers = ceil_log2(width)
        for r in range(layers):
            step = 1 << r
            moved = []
            for n in range(width):
                keep, value, shift = lanes[n]
                stays = keep & ~shift[r]
                if n + step < width:
                    far_keep, far_value, far_shift = lanes[n + step]
                    arrives = far_keep & far_shift[r]
                    moved.append((stays | arrives, Mux(arrives, far_value, value), Mux(arrives, far_shift, shift)))
                else:
                    moved.append((stays, value, shift))
            lanes = list(zip(wires(m, [keep for keep, _, _ in moved], f"keep_l{r}_"),
                             wires(m, [value for _, value, _ in moved], f"value_l{r}_"),
                             wires(m, [shift for _, _, shift in moved], f"shift_l{r}_")))
            if r == max(layers // 2, 1) - 1:
                lanes, valid, last, count_now = self._register(m, lanes, valid, last, count_now, advance)
        if layers == 0:     # one lane: no layer, the same three stages
            lanes, valid, last, count_now = self._register(m, lanes, valid, last, count_now, advance)
        with m.If(advance):
            m.d.sync += [
                self.o.valid.eq(valid),
                self.o.payload.count.eq(count_now),
                self.o.payload.last.eq(last),
            ]
            m.d.sync += [self.o.payload.data[n].eq(lanes[n][1]) for n in range(width)]
        return m

    @staticmethod
    def _register(m, lanes, valid, last, count, advance):
        """A register stage between shifter layers (held while the output stalls)."""
        held = [(Signal.like(keep, name=f"mid_keep{n}"), Signal.like(value, name=f"mid_value{n}"),
                 Signal.like(shift, name=f"mid_shift{n}")) for n, (keep, value, shift) in enumerate(lanes)]
        regs = (Signal(name="mid_valid"), Signal(name="mid_last"), Signal.like(count, name="mid_count"))
        with m.If(advance):
            for (keep, value, shift), (hk, hv, hs) in zip(lanes, held):
                m.d.sync += [hk.eq(keep), hv.eq(value), hs.eq(shift)]
            m.d.sync += [regs[0].eq(valid), regs[1].eq(last), regs[2].eq(count)]
        return held, *regs


class Packer(wiring.Component):
    """Join compacted beats of up to ``width_in`` elements into words of ``width_out``.

    A ring of ``depth`` entries (``2 * width_in`` unless given): beats enter at the tail
    (rotated into place), words leave from the head. A word leaves once more elements are
    known to follow it, or at the end of the vector, so the vector's ``last`` word always
    has ``count ≥ 1`` (unless the vector kept nothing at all: then one empty ``last`` word).

    The ring is rows of ``width_in`` banks. An accepted beat is rotated to the tail's bank
    over two cycles (by the low, then the high bits of the bank) and written into the ring
    in the third, each bank into the tail's row or the next: no shifter spans the ring, and
    the ring's write enables are registers.
    ``i.ready`` is a register, set when there will be room for a full beat (at most
    ``depth - width_in`` entries held, not counting a word leaving in the cycle before); it
    is never a function of the offered beat or of ``o.ready`` in the same cycle, so no
    ready path runs through it. A deeper ring lets a stream that keeps about ``width_out``
    entries a beat flow without stalls while beats are in the rotation stages. With
    ``always_ready``, the consumer promises to hold ``o.ready`` high and ``i.ready`` is
    constant: with ``width_in == width_out`` the ring then never overflows, provided a
    vector's last beat is followed by at least four idle cycles.

    Parameters
    ----------
    elem_shape : shape-like
    width_in, width_out : int
        Powers of two, ``width_out ≤ width_in``.
    depth : int
        Ring entries, a power of two ``≥ 2 * width_in`` (default ``2 * width_in``).
    output_register : bool
        ``o`` leaves a two-entry buffer (one cycle more latency): the head's window
        multiplexer then ends in a flip-flop, and ``o.ready`` reaches no logic of the ring.

    Attributes
    ----------
    i : In(stream) of :func:`dense_beat` ``(width_in)``
    o : Out(stream) of :func:`dense_beat` ``(width_out)``
    """

    #: independent copies of the tail counter, at most one per bank (each steers its banks'
    #: rotation and row; with 4, when the rotation spanned the ring, one copy's fan-out was
    #: topk's worst path, and 8 crashed Yosys 0.70's ``abc_ops -reintegrate``)
    TAIL_COPIES = 16
    #: independent copies of the head counter (each selects a group of the word's elements)
    HEAD_COPIES = 4

    def __init__(self, elem_shape, width_in, width_out, *, depth=None, always_ready=False,
                 output_register=False):
        exact_log2(width_in), exact_log2(width_out)
        depth = 2 * width_in if depth is None else depth
        if depth < 2 * width_in or depth & (depth - 1):
            raise ValueError(f"depth ({depth}) must be a power of two ≥ 2 × width_in ({2 * width_in})")
        if width_out > width_in:
            raise ValueError(f"width_out ({width_out}) must not exceed width_in ({width_in})")
        if always_ready and width_out != width_in:
            raise ValueError(f"always_ready needs width_out == width_in, not {width_out} and {width_in}")
        self._always_ready = always_ready
        self._output_register = output_register
        self._elem_shape = elem_shape
        self._width_in = width_in
        self._width_out = width_out
        self._depth = depth
        super().__init__({
            "i": In(stream.Signature(dense_beat(elem_shape, width_in))),
            "o": Out(stream.Signature(dense_beat(elem_shape, width_out))),
        })

    def elaborate(self, platform):
        m = Module()
        win, wout = self._width_in, self._width_out
        size = self._depth
        ring = Signal(data.ArrayLayout(self._elem_shape, size))
        tail = Signal(range(size))     # where the next accepted beat goes
        head = Signal(range(size))
        fill = Signal(range(size + 1))  # entries written into the ring
        ending = Signal()               # the vector's last beat is in the ring

        # The accepted beat, rotated to the tail's bank (stage 2 of 2) -> the ring's rows.
        placed = Signal(data.ArrayLayout(self._elem_shape, win))
        placed_enable = [Signal(win, name=f"placed_enable_row{r}") for r in range(size // win)]
        placed_count = Signal(range(win + 1))
        placed_last = Signal()
        shifted = Signal(data.ArrayLayout(self._elem_shape, win))    # the stage before
        shifted_valid = Signal(win)        # bank j receives an element
        shifted_wrap = Signal(win)         # ... in the row after the tail's
        shifted_count = Signal(range(win + 1))
        shifted_last = Signal()
        occupied = Signal(range(size + 1))   # fill + both stages' counts: accepted, not yet output

        # The word at the head (``word``), offered as ``o`` or through the output buffer.
        word = Signal(dense_beat(self._elem_shape, wout))
        word_valid, word_ready = Signal(), Signal()
        has_word = Signal()             # fill > wout, as a register (next to fill's)
        m.d.comb += [
            word_valid.eq(has_word | ending),
            word.count.eq(Mux(has_word, wout, fill)),
            word.last.eq(ending & ~has_word),
        ]
        if self._output_register:
            # Two entries, so the head's ready is the buffer's (from its fill counter) and not
            # the consumer's ``o.ready``: a one-register stage (ready = ~valid | o.ready) put
            # the consumer's logic in front of the head counters' enables.
            m.submodules.out_buffer = out_buffer = SyncFIFO(width=Shape.cast(word.shape()).width, depth=2)
            m.d.comb += [
                out_buffer.w_data.eq(word.as_value()),
                out_buffer.w_en.eq(word_valid),
                word_ready.eq(out_buffer.w_rdy),
                self.o.valid.eq(out_buffer.r_rdy),
                self.o.payload.eq(out_buffer.r_data),
                out_buffer.r_en.eq(self.o.ready),
            ]
        else:
            m.d.comb += [self.o.valid.eq(word_valid), self.o.payload.eq(word), word_ready.eq(self.o.ready)]
        # The word at the head. Every word but a vector's last takes exactly wout entries,
        # and the last one empties the ring, which then restarts at 0: so head is a multiple
        # of wout and the word is one of size/wout aligned windows, not a full rotation.
        # The head is kept in HEAD_COPIES counters that step alike (as the tail's), each
        # choosing the window of its own group of the word's elements.
        word_bits = exact_log2(wout)
        head_copies = min(self.HEAD_COPIES, wout)
        heads = [head] + [Signal(range(size), name=f"head_copy{c}") for c in range(1, head_copies)]
        for c, copy in enumerate(heads):
            elems = [n for n in range(wout) if n * head_copies // wout == c]
            windows = [Cat(ring[w * wout + n] for n in elems) for w in range(size // wout)]
            at_head = rotate(m, windows, copy[word_bits:], left=True, name=f"head{c}") \
                if len(windows) > 1 else windows
            m.d.comb += Cat(word.data[n] for n in elems).eq(at_head[0])
        taken = Mux(word_valid & word_ready, word.count, 0)
        entering = self.i.valid & self.i.ready
        given = Mux(entering, self.i.payload.count, 0)
        out_last = word_valid & word_ready & word.last
        if self._always_ready:
            m.d.comb += self.i.ready.eq(1)
        else:
            # Registered: the next cycle's "no vector ending, room for a full beat", so
            # i.ready leaves a flip-flop. Neither counts the word leaving this cycle (the
            # head's handshake would be on the path): the room is at most one word
            # conservative, and after a vector's last word i.ready stays low a cycle more.
            ready = Signal(init=1)
            m.d.sync += ready.eq(~ending & ~placed_last & ~shifted_last & ~(entering & self.i.payload.last)
                                 & (occupied + given <= size - win))
            m.d.comb += self.i.ready.eq(ready)

        # The ring is ``size // win`` rows of ``win`` banks; entry ``s`` is bank ``s % win`` of
        # row ``s // win``. Element i of a beat goes to entry tail + i: bank (tail + i) % win,
        # in the tail's row or, past the row's end, the next. So the beat is rotated by the
        # tail's bank only (a ``win``-wide barrel shifter over two cycles: the low, then the
        # high bits of the bank), and each bank decides its row from one "wrapped" bit: no
        # shifter as wide as the ring. Only the valid bits depend on the handshake (the
        # data registers load every cycle). The tail is kept in TAIL_COPIES counters that
        # step alike (not one register with copies, which synthesis would merge); each
        # steers a contiguous group of banks, so no register drives every multiplexer.
        bank_bits = exact_log2(win)
        split = bank_bits // 2
        copies = min(self.TAIL_COPIES, win)
        tails = [tail] + [Signal(range(size), name=f"tail_copy{c}") for c in range(1, copies)]
        group = lambda copy_of: [copy_of[j * copies // win] for j in range(win)]
        low = rotate(m, list(self.i.payload.data), group([t[:split] for t in tails]), left=False, name="tail_lo")
        # Bank j receives element (j - bank) % win, if that is below the beat's count.
        bank = group([t[:bank_bits] for t in tails])
        receives = [(Const(j, bank_bits) - bank[j])[:bank_bits] < self.i.payload.count for j in range(win)]
        m.d.sync += [
            shifted.eq(Cat(low)),
            shifted_valid.eq(Cat(receives) & entering.replicate(win)),
            shifted_wrap.eq(Cat(Const(j, bank_bits) < bank[j] for j in range(win))),
            shifted_count.eq(given),
            shifted_last.eq(entering & self.i.payload.last),
            occupied.eq(occupied - taken + given),
        ]
        # The second stage's amounts and rows: the tails' values as the beat entered.
        highs = [Signal(range(size), name=f"shifted_tail{c}") for c in range(copies)]
        m.d.sync += [h.eq(t) for h, t in zip(highs, tails)]
        m.d.sync += [t.eq(t + given) for t in tails]
        high_amounts = group([Cat(Const(0, split), h[split:bank_bits]) for h in highs])
        high = rotate(m, list(shifted), high_amounts, left=False, name="tail_hi")
        rows = size // win
        row_of = group([h[bank_bits:] for h in highs])
        for j in range(win):
            row = (row_of[j] + shifted_wrap[j])[:exact_log2(rows)] if rows > 1 else Const(0, 1)
            for r in range(rows):
                m.d.sync += placed_enable[r][j].eq(shifted_valid[j] & (row == r))
        m.d.sync += [
            placed.eq(Cat(high)),
            placed_count.eq(shifted_count),
            placed_last.eq(shifted_last),
        ]
        for r in range(rows):
            for j in range(win):
                with m.If(placed_enable[r][j]):
                    m.d.sync += ring[r * win + j].eq(placed[j])
        # A word that does not end the vector takes exactly wout entries, and the one that
        # does resets the heads: so they step by the constant wout (no count on the path).
        fill_next = Signal.like(fill)
        m.d.comb += fill_next.eq(fill - taken + placed_count)
        m.d.sync += [fill.eq(fill_next), has_word.eq(fill_next > wout)]
        with m.If(word_valid & word_ready):
            m.d.sync += [h.eq(h + wout) for h in heads]
        with m.If(placed_last):
            m.d.sync += ending.eq(1)
        # The next vector starts at entry 0: its beats enter only once the ring is empty
        # (i.ready needs ~ending, or the always_ready promise of idle cycles), so the tails
        # restart as the last beat enters (its rotation has read them) and the heads as
        # the last word leaves.
        with m.If(entering & self.i.payload.last):
            m.d.sync += [t.eq(0) for t in tails]
        with m.If(out_last):
            m.d.sync += [ending.eq(0), *(h.eq(0) for h in heads)]
        return m
