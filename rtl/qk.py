"""The bitwidth converter and the Q×K lanes: key plane rows in, exact integer scores out.

Formats (:class:`~attnforge.configs.qk.QKConfig`, :mod:`attnforge.sim.qk`): a key element
is ``key_bits = msb_bits + lsb_bits`` signed, stored as an MSB plane value ``k >> lsb_bits``
(``msb_bits`` signed) and an LSB plane value ``k mod 2**lsb_bits`` (unsigned). A plane row
(one key, ``D`` elements) is the memory's packed bits: element ``j`` at bits ``j·b``, which
is exactly an :class:`~amaranth.lib.data.ArrayLayout` of ``D`` ``b``-bit elements.

* :class:`BitwidthConverter` widens each element to the 12-bit datapath keeping its integer
  value: ``msb << lsb_bits`` while only the MSB plane is on chip, ``(msb << lsb_bits) | lsb``
  once the LSB plane has arrived (per beat, the ``full`` flag).
* :class:`QKLanes` holds the query ``q`` (``D`` × 12 bits) in registers and broadcasts it to
  ``multipliers`` 12×12 multipliers, ``L = multipliers / D`` keys per beat, each followed by
  an adder tree of ``log2(D)`` registered levels: ``L`` exact scores per cycle.
* :class:`QKDatapath` chains converter, lanes and :class:`~attnforge.rtl.softmax.Softmax`.

No ready path runs through the lanes: their ``i.ready`` comes from registers (a credit
count in front of their output FIFO), so the wide datapath registers need no clock enable.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..configs.qk import QKConfig
from .dsp import multiply, multiply_latency
from .pipeline import enable_copies, stage, tree
from .softmax import Softmax
from .softmax import input_beat as score_beat
from .softmax import output_beat as prob_beat

__all__ = ["plane_row", "query_layout", "plane_beat", "key_beat", "score_beat", "prob_beat",
           "BitwidthConverter", "QKLanes", "QKDatapath"]


def plane_row(cfg, bits, signed_):
    """One key's row of a plane: ``D`` elements of ``bits``, packed as in memory."""
    return data.ArrayLayout(signed(bits) if signed_ else unsigned(bits), cfg.head_dim)


#: Copies of the query registers' load enable (``D`` / this elements each).
QUERY_COPIES = 8


def query_layout(cfg):
    """The query: ``D`` elements, 12-bit signed."""
    return data.ArrayLayout(signed(cfg.DATA_BITS), cfg.head_dim)


def plane_beat(cfg):
    """``L`` keys as plane rows: ``msb`` (signed), ``lsb`` (unsigned, used when ``full``),
    ``alive`` (bit ``l`` for key ``l``) and ``last``."""
    lanes = cfg.scores_per_cycle
    return data.StructLayout({
        "msb": data.ArrayLayout(plane_row(cfg, cfg.msb_bits, True), lanes),
        "lsb": data.ArrayLayout(plane_row(cfg, cfg.lsb_bits, False), lanes),
        "full": 1,
        "alive": unsigned(lanes),
        "last": 1,
    })


def key_beat(cfg):
    """``L`` keys widened to the 12-bit datapath, their ``alive`` flags and ``last``."""
    lanes = cfg.scores_per_cycle
    return data.StructLayout({
        "keys": data.ArrayLayout(query_layout(cfg), lanes),
        "alive": unsigned(lanes),
        "last": 1,
    })


def _check_config(config):
    if not isinstance(config, QKConfig):
        raise TypeError(f"config must be a QKConfig, not {config!r}")
    return config


class BitwidthConverter(wiring.Component):
    """Widen MSB-plane rows to 12-bit keys, concatenating the LSB plane when it is there.

    Combinational (an AND per LSB bit and wiring): the Q×K lanes' operand registers follow.

    Parameters
    ----------
    config : QKConfig

    Attributes
    ----------
    i : In(stream) of :func:`plane_beat`
    o : Out(stream) of :func:`key_beat`
        Element ``j`` of key ``l``: ``(msb << lsb_bits) | (lsb if full else 0)``, sign-extended
        to 12 bits; ``alive`` and ``last`` passed through.
    """

    def __init__(self, config=QKConfig()):
        self.config = _check_config(config)
        super().__init__({
            "i": In(stream.Signature(plane_beat(config))),
            "o": Out(stream.Signature(key_beat(config))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        inp, out = self.i.payload, self.o.payload
        m.d.comb += [
            self.o.valid.eq(self.i.valid),
            self.i.ready.eq(self.o.ready),
            out.alive.eq(inp.alive),
            out.last.eq(inp.last),
        ]
        for lane in range(cfg.scores_per_cycle):
            for j in range(cfg.head_dim):
                low = inp.lsb[lane][j] & inp.full.replicate(cfg.lsb_bits)
                m.d.comb += out.keys[lane][j].eq(Cat(low, inp.msb[lane][j]).as_signed())
        return m


class QKLanes(wiring.Component):
    """``multipliers`` parallel 12×12 multipliers and adder trees: ``L`` scores per beat.

    Pipeline: operands (the query element and the key element of each multiplier: its input
    registers) → products (both inside the MULT18X18D blocks on ECP5,
    :func:`~attnforge.rtl.dsp.multiply`) → ``log2(D)`` adder-tree levels → an output FIFO of
    :attr:`fifo_depth` beats. The pipeline never stalls (no clock enable on its thousands
    of registers); instead a beat is accepted only when the FIFO is sure to have room for
    it (a credit count of the beats in the pipeline and the FIFO), so ``i.ready`` comes
    from registers and no ready path runs from ``o`` to ``i``. :attr:`latency` =
    ``log2(D) + 5`` cycles from an input handshake to the output's handshake (the
    multipliers' 3, the trees', the FIFO's write and output register), never stalled.

    The query of a row comes on ``q`` before the row's keys: one ``q`` beat per row. A
    second register holds the next row's query, so rows follow each other without a bubble
    when ``q`` runs ahead.

    Parameters
    ----------
    config : QKConfig

    Attributes
    ----------
    q : In(stream) of :func:`query_layout`
        The query of each row, in order.
    i : In(stream) of :func:`key_beat`
        ``L`` keys per beat; ``last`` ends the row (and retires its query).
    o : Out(stream) of :func:`score_beat`
        ``L`` exact scores ``q·k`` (``score_bits`` signed), ``alive`` and ``last`` passed
        through: the softmax's input.
    latency : int
    fifo_depth : int
        Enough for a beat per cycle with the output always ready.
    """

    def __init__(self, config=QKConfig()):
        self.config = _check_config(config)
        self._mul_latency = multiply_latency(signed(config.DATA_BITS), signed(config.DATA_BITS))
        self.latency = ceil_log2(config.head_dim) + self._mul_latency + 2
        # in flight: the pipeline's beats plus the FIFO's, and two cycles for the credit to
        # return (``i.ready`` is registered and ignores the beat leaving)
        self.fifo_depth = 1 << ceil_log2(self.latency + 3)
        super().__init__({
            "q": In(stream.Signature(query_layout(config))),
            "i": In(stream.Signature(key_beat(config))),
            "o": Out(stream.Signature(score_beat(config))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        L, D = cfg.scores_per_cycle, cfg.head_dim
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=len(self.o.payload.as_value()),
                                                    depth=self.fifo_depth)

        # Credits: beats accepted and not yet read from the FIFO.
        held = Signal(range(self.fifo_depth + 1))
        cur, nxt = Signal(query_layout(cfg)), Signal(query_layout(cfg))
        cur_valid, nxt_valid = Signal(), Signal()
        # ``i.ready`` is ``cur_valid & (held + accept < fifo_depth)``, a flip-flop of its own
        # (computed from both registers' next values), so the consumer's logic starts there.
        ready = Signal()
        m.d.comb += [
            self.i.ready.eq(ready),
            self.q.ready.eq(~nxt_valid),
        ]
        accept = self.i.valid & self.i.ready
        leave = self.o.valid & self.o.ready
        held_next = held + accept - leave
        m.d.sync += held.eq(held_next)

        # The query registers: the current row's and the next one's.
        swap = ~cur_valid | (accept & self.i.payload.last)
        # (The credit test ignores a beat leaving this cycle: the softmax's ready, a few LUTs
        # deep, fed the credit adder and this register. The FIFO has room to spare for that.)
        m.d.sync += ready.eq(Mux(swap, nxt_valid, cur_valid) & (held + accept < self.fifo_depth))
        with m.If(swap):
            m.d.sync += [cur_valid.eq(nxt_valid), nxt_valid.eq(0)]
        # ``cur`` loads under QUERY_COPIES copies of ``swap``, each from a copy of ``cur_valid``
        # of its own, each enabling a group of the elements (one ``swap`` drove 384 enables).
        last_accept = accept & self.i.payload.last
        copies = min(QUERY_COPIES, D)
        valid_copies = enable_copies(m, "cur_valid_copy", copies, init=0,
                                     if_enabled=Mux(last_accept, nxt_valid, 1), if_stalled=nxt_valid)
        for c, valid_copy in enumerate(valid_copies):
            with m.If(~valid_copy | last_accept):
                m.d.sync += [cur[j].eq(nxt[j]) for j in range(c * D // copies, (c + 1) * D // copies)]
        with m.If(self.q.valid & self.q.ready):
            m.d.sync += [nxt.eq(self.q.payload), nxt_valid.eq(1)]

        keys = self.i.payload.keys
        # Operand registers, then products (in the DSP blocks on ECP5).
        products = [multiply(m, f"mul{lane}_{j}", cur[j], keys[lane][j], platform=platform)
                    for lane in range(L) for j in range(D)]
        meta = {"valid": accept, "alive": self.i.payload.alive, "last": self.i.payload.last}
        for k in range(self._mul_latency):
            meta = vars(stage(m, f"prod{k}", **meta))
        sums = []
        for lane in range(L):
            total, lane_meta, _ = tree(m, f"add{lane}_l", products[lane * D:(lane + 1) * D],
                                       lambda a, b: a + b, **meta)
            sums.append(total)
        # The trees' last level is registered: write it straight into the FIFO.
        result = Signal(score_beat(cfg))
        m.d.comb += [
            result.alive.eq(lane_meta["alive"]),
            result.last.eq(lane_meta["last"]),
            *(result.scores[lane].eq(sums[lane]) for lane in range(L)),
            fifo.w_data.eq(result),
            fifo.w_en.eq(lane_meta["valid"]),
            self.o.valid.eq(fifo.r_rdy),
            self.o.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.o.ready),
        ]
        return m


class QKDatapath(wiring.Component):
    """Converter, Q×K lanes and softmax in a chain: plane rows and queries in, probabilities out.

    Parameters
    ----------
    config : QKConfig

    Attributes
    ----------
    q : In(stream) of :func:`query_layout`
        One query per row.
    i : In(stream) of :func:`plane_beat`
        The row's keys, ``L`` per beat (``full``: the LSB plane is there).
    o : Out(stream) of :func:`prob_beat`
        The row's probabilities, ``max_prob`` and ``refetch``.
    scale_mant, scale_shift, threshold : In
        As :class:`~attnforge.rtl.softmax.Softmax`'s, read when the row's first score
        reaches the softmax (``latency`` cycles after its first keys): hold them while
        rows of one head and threshold are in flight.
    """

    def __init__(self, config=QKConfig()):
        self.config = _check_config(config)
        super().__init__({
            "q": In(stream.Signature(query_layout(config))),
            "i": In(stream.Signature(plane_beat(config))),
            "o": Out(stream.Signature(prob_beat(config))),
            "scale_mant": In(config.SCALE_MANT_BITS),
            "scale_shift": In(config.SCALE_SHIFT_BITS),
            "threshold": In(config.threshold_bits),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.converter = converter = BitwidthConverter(cfg)
        m.submodules.lanes = lanes = QKLanes(cfg)
        m.submodules.softmax = softmax = Softmax(cfg)
        wiring.connect(m, wiring.flipped(self.q), lanes.q)
        wiring.connect(m, wiring.flipped(self.i), converter.i)
        wiring.connect(m, converter.o, lanes.i)
        wiring.connect(m, lanes.o, softmax.i)
        wiring.connect(m, softmax.o, wiring.flipped(self.o))
        m.d.comb += [
            softmax.scale_mant.eq(self.scale_mant),
            softmax.scale_shift.eq(self.scale_shift),
            softmax.threshold.eq(self.threshold),
        ]
        return m
