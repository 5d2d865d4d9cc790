"""The streaming FFT array's schedule: where each index bit of a sample sits, stage by stage.

Pure Python (no Amaranth, no numpy): :mod:`.array` builds its hardware from it, and the
tests replay it on numpy data to check the plan apart from the timing.

Slots
-----
A transform of ``N = 2**L`` points streams through the array as ``N / lanes`` beats of
``lanes = 2**p`` samples. A sample's place in the stream is a *lane slot* (the ``p`` bits
of its lane) and a *time slot* (the ``L - p`` bits of its beat number counted from the
frame's first beat; time slot ``t`` weighs ``2**t`` beats). Each slot bit holds one bit of
the sample's natural input index ``i`` ("x-bit"). On input, lane slot ``m`` holds x-bit
``m`` and time slot ``t`` holds x-bit ``p + t``.

The model (:func:`attnforge.sim.butterfly.fft`) is a radix-2 decimation-in-time FFT on the
bit-reversed input: stage ``k`` pairs the samples whose x-bit ``b = L-1-k`` differs, with
the twiddle ``W_{2**(k+1)}**j``, ``j = Σ_{r<k} x-bit(L-1-r)·2**r`` (the x-bits already
done, reversed). A stage runs on a column of ``lanes/2`` PEs pairing two lanes of one beat,
so its x-bit must sit in a lane slot:

* an **exchange** (delay-switch-delay, latency ``D = 2**t`` beats) swaps time slot ``t``
  with lane slot ``p-1``: the upper lanes (bit ``p-1`` clear) go straight to the switch and
  then through a ``D``-beat delay; the lower lanes go through a ``D``-beat delay, then the
  switch, then out. The switch crosses while bit ``t`` of the input beat number is 1.
* a **PE column** pairs the lanes differing in bit ``m`` of the lane number.

Columns (fixed at elaboration for ``n_max = 2**Lmax``):

1. ``Lmax - p`` **time columns** ``c = 0 … Lmax-p-1``: exchange time slot
   ``Lmax-1-p-c`` (``D = n_max / (2·lanes) / 2**c`` beats) with lane slot ``p-1``, then a
   PE column on lane bit ``p-1``. A transform of ``N = 2**L`` runs on the last ``L - p`` of
   them (``c ≥ Lmax - L``) and bypasses the others. Its first active exchange evicts x-bit
   ``p-1`` into time slot ``L-1-p``; every later one swaps out the x-bit just done.
2. one **return column**: exchange time slot ``L-1-p`` (``D = N / (2·lanes)``, chosen at
   run time) with lane slot ``p-1``, bringing x-bit ``p-1`` back, then a PE column on lane
   bit ``p-1``. ``N = lanes`` bypasses the exchange (and ``n_max = lanes`` has none).
3. ``p - 1`` **lane columns**, for lane bits ``p-2 … 0``: PE columns only (the stage's
   pairs sit in one beat).

``log2(n_max)`` PE columns in all, ``lanes/2`` PEs each. The output leaves in the order of
the final slot map (:meth:`ArraySchedule.final_map`); the reorder buffer brings it to
natural order.

Chained schedule (``chained=True``)
-----------------------------------
A second array fed straight from the first array's last PE column (the butterfly FFN,
:mod:`.ffn`) receives each butterfly-linear transform in that column's order: the first
array's final slot map, lanes unchanged and the time slots rotated (time slot ``t`` holds
x-bit ``p+1+t``, the top one x-bit ``p``, for ``N ≥ 4·lanes``). Its columns are laid out for
that input (``n_max ≥ 4·lanes``; smaller arrays have an identity final map, and the chained
schedule is the plain one):

1. ``Lmax - p - 1`` time columns ``c``: exchange time slot ``Lmax-2-p-c`` (``D = n_max /
   (4·lanes) / 2**c``), used by transforms with ``c ≥ Lmax - L``;
2. a **top column**: exchange time slot ``L-1-p`` (``D = N / (2·lanes)``, run time), which
   holds x-bit ``p``; used when ``N > lanes``;
3. the return column: exchange the time slot the first active exchange evicted x-bit ``p-1``
   into (``D = N / (4·lanes)``, or 1 when ``N = 2·lanes``);
4. the ``p - 1`` lane columns.

Every column still runs the stage its x-bit demands (``b = L-1-k``), so the second array's
weights, shifts and reorder buffer follow from the same plan; the sample at the input slots
holding x-bits ``x`` is the first array's output at model position ``Σ x-bit(L-1-q)·2**q``.
"""

import dataclasses

__all__ = ["Column", "ColumnPlan", "ArraySchedule", "BitReverseSchedule"]


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of the array, as elaborated.

    Attributes
    ----------
    kind : str
        ``"time"``, ``"top"`` (chained schedule only), ``"return"`` or ``"lane"``.
    lane_bit : int
        Its PEs pair the lanes ``l`` and ``l | 2**lane_bit`` (``l`` with that bit clear).
    delay : int
        The exchange's delay in beats: fixed for a time column, the largest one for the top
        and return columns (their actual delay is chosen at run time), 0 for a lane column.
    kmax : int
        The largest FFT stage index the column runs (over every ``N``): its twiddle ROM
        holds ``W_{2**(kmax+1)}**m``, ``m < 2**kmax``.
    """
    kind: str
    lane_bit: int
    delay: int
    kmax: int


@dataclasses.dataclass(frozen=True)
class ColumnPlan:
    """What one column does for one transform length ``N = 2**L``.

    Attributes
    ----------
    active : bool
        False: the column passes beats through (one register, no exchange, no PE).
    exchange : int or None
        The time slot its exchange swaps with lane slot ``p-1`` (``None``: no exchange).
    stage : int
        The FFT stage ``k`` it runs (when active).
    twiddle_bits : tuple
        Source of each bit of the twiddle ROM index (LSB first, ``kmax`` entries):
        ``("lane", m)`` (bit ``m`` of the PE's ``x0`` lane number), ``("time", t)`` (bit
        ``t`` of the beat number at the column's input) or ``None`` (0).
    slots : tuple
        ``(lane_slots, time_slots)`` at the PEs' inputs (after the exchange): the x-bit
        each slot holds (empty when inactive).
    """
    active: bool
    exchange: object
    stage: int
    twiddle_bits: tuple
    slots: tuple = ((), ())


class ArraySchedule:
    """The columns of a streaming FFT array and their plan for each transform length.

    Parameters
    ----------
    lanes : int
        Samples per beat, a power of two ≥ 2.
    n_max : int
        Longest transform, a power of two ≥ ``lanes``.
    chained : bool
        Lay the columns out for input in another array's final slot order (module
        docstring). Ignored (the plain schedule) when ``n_max < 4·lanes``.

    Attributes
    ----------
    chained : bool
        The chained layout is in use.
    """

    def __init__(self, lanes, n_max, *, chained=False):
        if lanes < 2 or lanes & (lanes - 1):
            raise ValueError(f"lanes={lanes} is out of range: expected a power of two ≥ 2")
        if n_max < lanes or n_max & (n_max - 1):
            raise ValueError(f"n_max={n_max} is out of range: expected a power of two ≥ "
                             f"lanes={lanes}")
        self.lanes = lanes
        self.n_max = n_max
        self.p = p = lanes.bit_length() - 1
        self.log2n_max = lmax = n_max.bit_length() - 1
        self.chained = chained = chained and lmax >= p + 2
        cols = []
        top = lmax - 1 - p - chained                    # the first time column's slot
        for c in range(top + 1):
            cols.append(Column("time", p - 1, 1 << (top - c), c))
        if chained:
            cols.append(Column("top", p - 1, 1 << (lmax - 1 - p), lmax - 1 - p))
        cols.append(Column("return", p - 1, (1 << top) if lmax > p else 0, lmax - p))
        for m in range(p - 2, -1, -1):
            cols.append(Column("lane", m, 0, lmax - 1 - m))
        self.columns = tuple(cols)
        self._plans = {}
        self._finals = {}
        for log2n in self.log2n_range:
            self._plans[log2n], self._finals[log2n] = self._plan(log2n)

    @property
    def log2n_range(self):
        """The transform lengths the array runs, as ``log2 N``: ``log2(lanes) … log2(n_max)``."""
        return range(self.p, self.log2n_max + 1)

    def plan(self, log2n):
        """The :class:`ColumnPlan` of every column for ``N = 2**log2n``."""
        return self._plans[log2n]

    def final_map(self, log2n):
        """The slot map after the last column: ``(lane_slots, time_slots)``, each a tuple of the
        x-bit every slot holds. Output position bit ``q`` (natural frequency order) is x-bit
        ``log2n - 1 - q``."""
        return self._finals[log2n]

    def input_map(self, log2n):
        """The slot map the columns receive: ``(lane_slots, time_slots)``, the x-bit each holds.

        The identity (lane slot ``m`` holds x-bit ``m``, time slot ``t`` x-bit ``p + t``), or
        with ``chained`` the plain schedule's final map."""
        p = self.p
        if self.chained:
            return ArraySchedule(self.lanes, self.n_max).final_map(log2n)
        return tuple(range(p)), tuple(p + t for t in range(log2n - p))

    def _plan(self, log2n):
        p, lmax = self.p, self.log2n_max
        lane, time = (list(v) for v in self.input_map(log2n))
        plans = []
        stage = 0
        for c, col in enumerate(self.columns):
            b = log2n - 1 - stage
            if col.kind == "time":
                active = c >= lmax - log2n
            else:
                active = col.kind != "top" or log2n > p
            exchange = None
            if active and col.kind != "lane" and lane[p - 1] != b:
                # the time slot holding the stage's x-bit (a time column's is fixed)
                exchange = time.index(b)
                assert col.kind != "time" or col.delay == 1 << exchange, (log2n, c, time)
            if not active:
                plans.append(ColumnPlan(False, None, 0, (None,) * col.kmax))
                continue
            if exchange is not None:
                time[exchange], lane[p - 1] = lane[p - 1], time[exchange]
            assert lane[col.lane_bit] == b, (log2n, c, lane, time)
            assert stage <= col.kmax
            where = {x: ("lane", m) for m, x in enumerate(lane)}
            where.update({x: ("time", t) for t, x in enumerate(time)})
            # j = Σ_{r<stage} x-bit(L-1-r)·2**r, index = j << (kmax - stage)
            bits = [None] * col.kmax
            for r in range(stage):
                bits[r + col.kmax - stage] = where[log2n - 1 - r]
            plans.append(ColumnPlan(True, exchange, stage, tuple(bits), (tuple(lane), tuple(time))))
            stage += 1
        assert stage == log2n
        return tuple(plans), (tuple(lane), tuple(time))

    def reorder_map(self, log2n):
        """The reorder buffer's conflict-free bank mapping for ``N = 2**log2n``.

        A beat leaving the last column at beat number ``T`` writes its lane ``λ`` into bank
        ``λ ^ h(T)`` at address ``T``, where ``h`` moves the time-slot bits that hold output
        lane bits into the bank bits whose lane slots hold none. An output beat then reads
        each bank once.

        Returns
        -------
        h : tuple of (t, m)
            ``h(T) = Σ T[t] << m``.
        read : callable ``(t_out, l) -> (bank, address)``
            Where output sample ``t_out·lanes + l`` lies (pure Python, for tests and ROMs).
        """
        p = self.p
        lane, time = self._finals[log2n]
        out_lane_bits = {log2n - 1 - i for i in range(p)}
        free = [m for m in range(p) if lane[m] not in out_lane_bits]
        held = [t for t in range(len(time)) if time[t] in out_lane_bits]
        assert len(free) == len(held)
        h = tuple(zip(held, free))

        def read(t_out, l):
            f = t_out * self.lanes + l

            def xbit(b):
                return (f >> (log2n - 1 - b)) & 1
            addr = sum(xbit(x) << t for t, x in enumerate(time))
            lam = sum(xbit(x) << m for m, x in enumerate(lane))
            bank = lam
            for t, m in h:
                bank ^= ((addr >> t) & 1) << m
            return bank, addr
        return h, read

    def pe_pairs(self, column):
        """The lane pairs ``(l0, l1)`` of a column's PEs, in PE order."""
        bit = self.columns[column].lane_bit
        return [(l, l | 1 << bit) for l in range(self.lanes) if not l >> bit & 1]

    def weight_map(self, log2n):
        """Where each butterfly-linear weight goes for ``N = 2**log2n``.

        In real (butterfly-linear) mode the array's input passes a bit-reversal buffer, so
        the sample at array stream index ``i`` is ``x[rev(i)]`` and the model position of a
        sample is ``A = rev(i)``: position bit ``q`` is x-bit ``log2n-1-q``. Stage ``k``
        pairs the positions differing in bit ``k``, pair ``p`` = the position with bit ``k``
        removed (:func:`attnforge.sim.butterfly.butterfly`). Each PE holds the weights of
        its pairs at the address of the beat number at its column's input.

        Returns
        -------
        list of lists
            ``[k][p] = (column, pe, address)``.
        """
        n = 1 << log2n
        out = [[None] * (n // 2) for _ in range(log2n)]
        for c, plan in enumerate(self.plan(log2n)):
            if not plan.active:
                continue
            k = plan.stage
            lane_slots, time_slots = plan.slots
            for pe, (l0, _) in enumerate(self.pe_pairs(c)):
                for beat in range(max(n // self.lanes, 1)):
                    xbits = {x: l0 >> m & 1 for m, x in enumerate(lane_slots)}
                    xbits.update({x: beat >> t & 1 for t, x in enumerate(time_slots)})
                    pos = sum(xbits[log2n - 1 - q] << q for q in range(log2n))
                    assert not pos >> k & 1
                    pair = (pos >> (k + 1)) << k | pos & ((1 << k) - 1)
                    assert out[k][pair] is None
                    out[k][pair] = (c, pe, beat)
        return out


class BitReverseSchedule(ArraySchedule):
    """A slot map for a :class:`~.reorder.ReorderBuffer` that bit-reverses its input.

    Its "final" slot map is the identity (lane slot ``m`` holds x-bit ``m``, time slot ``t``
    x-bit ``p + t``), so the buffer reads out position ``f`` = sample ``rev(f)``: the input
    buffer of the array's real (butterfly-linear) mode.
    """

    def __init__(self, lanes, n_max):
        super().__init__(lanes, n_max)
        self._finals = {log2n: (tuple(range(self.p)),
                                tuple(self.p + t for t in range(log2n - self.p)))
                        for log2n in self.log2n_range}
