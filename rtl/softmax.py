"""The streaming fixed-point softmax: a row of integer scores in, its probabilities out.

Arithmetic: exactly the steps of :mod:`attnforge.sim.softmax` (max, scale, exp ROM, sum,
reciprocal with a seed ROM and one Newton step, normalize), widths from
:class:`~attnforge.configs.qk.QKConfig`. ``L = scores_per_cycle`` lanes work in parallel.

Three stages work on different rows at once, so a row's normalize overlaps the next row's
sum and the one after's receive:

1. **Receive** ``L`` scores per beat into one of three row slots of the *score buffer*
   (:class:`~amaranth.lib.memory.Memory` of ``L`` scores and alive flags a word, a slot
   ``2**ceil_log2(ceil(n_max / L))`` words, the depth rounded up to a power of two) while a registered max tree folds them into the row's
   maximum.
2. **Sum** reads the slot back one beat per cycle: ``d = max − s``, ``d·mant`` (a pipelined
   multiplier), ``+ half``, ``>> shift`` in two steps and saturation to ``y``; the exp ROM
   (one read port per lane) and the rounding right shift by ``int(y)`` give the terms,
   which go into one of four row slots of the *term buffer* (``4 × 2**ceil_log2(ceil(n_max
   / L))`` words) and through a registered adder
   tree into the row's sum. The reciprocal pipeline (leading one, seed ROM, two
   multiplies) then gives ``r``, the normalize shift, ``max_prob`` and the refetch decision
   ``max_prob < threshold``.
3. **Normalize** reads the term slot back, ``((term >> G)·r + half) >> shift``, and emits
   one beat of ``L`` probabilities per cycle, with backpressure: the whole normalize
   pipeline, the term buffer's read port included, advances when the output register is
   free or being read.

A score slot is busy for the receive and sum passes of its row, a term slot from the sum
pass to the end of the normalize pass, reciprocal included (:data:`SCORE_SLOTS`,
:data:`TERM_SLOTS`). Every multiplier has registered operands and a registered
product; every variable shift and adder-tree level ends in a register, and every block-RAM
read is registered once more in the fabric before any logic.

Cycles (:func:`attnforge.sim.softmax.softmax_cycles`): a lone row of ``B = ceil(N / L)``
beats, input at full rate and output always ready, spans ``3·B + 2·ceil_log2(L) + 38``
cycles from its first input handshake to its last output handshake (both included): the
three passes of ``B`` cycles, the max tree and the adder tree (``ceil_log2(L)`` registers
each), and 38 fixed cycles — the running max 1, the sum pass's start 1, the term pipeline
14 (a register after the block RAM, ``d``, ``d·mant`` 4, ``+ half``, two shifts, saturation, exp
ROM, a register after it, ``+ 2**(i−1)``, ``>> i``), the accumulator 1, the reciprocal and
decision 12 (two multiplies of 3), the slot handover 1, the normalize pass's start 1, its
pipeline 6 (a register after the block RAM, the multiply 3, rounding, output register) and
the output handshake 1. Rows back to back leave one every ``B + 1`` cycles (each pass
spends one cycle starting a row) once ``B ≥ (26 + ceil_log2(L))/2``; shorter rows are
bounded by the term slots' turnaround of ``2·B + 30 + ceil_log2(L)`` cycles per four rows
(:func:`attnforge.sim.softmax.softmax_interval`).

Multipliers (:func:`attnforge.rtl.dsp.multiply`) keep their operand and product registers
inside the MULT18X18D blocks on ECP5: ``2·L`` for ``d·mant`` (``d`` is ``score_bits`` > 18
wide), ``L`` for the normalize and 2 for the reciprocal.
"""

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..configs.qk import QKConfig
from .dsp import multiply, multiply_latency
from .pipeline import split, stage, tree
from .stream import vector_beat

__all__ = ["Softmax", "input_beat", "output_beat"]

FREE, FILLING, FULL = 0, 1, 2
#: row slots of the score buffer: one is received while one is summed; a third covers the
#: max tree's drain and the start cycles
SCORE_SLOTS = 3
#: row slots of the term buffer: a slot is held from its row's sum pass, through the
#: reciprocal, to the end of its normalize pass (2·B + 30 + ceil_log2(L) cycles), so four
#: keep rows of B ≥ (26 + ceil_log2(L))/2 beats at one pass per row
TERM_SLOTS = 4


def input_beat(cfg):
    """``L`` signed ``score_bits`` scores, their ``alive`` flags (bit ``l`` for lane ``l``),
    ``last`` on the row's final beat."""
    return vector_beat(cfg.scores_per_cycle, signed(cfg.score_bits), name="scores",
                       alive=unsigned(cfg.scores_per_cycle))


def output_beat(cfg):
    """``L`` probabilities (``prob_frac_bits`` fraction bits, dead lanes 0), the input's
    ``alive`` flags, the row's ``max_prob`` and ``refetch`` (``max_prob < threshold``) on
    every beat, ``last`` on the row's final beat."""
    lanes = cfg.scores_per_cycle
    return data.StructLayout({
        "probs": data.ArrayLayout(unsigned(cfg.prob_bits), lanes),
        "alive": unsigned(lanes),
        "max_prob": unsigned(cfg.prob_bits),
        "refetch": 1,
        "last": 1,
    })


def _max_alive(a, b):
    """The larger of two ``(alive, value)`` pairs, dead ones ignored."""
    (a_alive, a_value), (b_alive, b_value) = a, b
    take_b = b_alive & (~a_alive | (b_value > a_value))
    return (a_alive | b_alive, Mux(take_b, b_value, a_value))


def _next_slot(slot, slots):
    return Mux(slot == slots - 1, 0, slot + 1)


def _recip_err_bits(cfg):
    """Signed width holding the Newton step's error term for every normalized sum."""
    rb, k = cfg.RECIP_BITS, cfg.RECIP_SEED_BITS
    seed = cfg.recip_seed_table()
    lo = hi = 0
    for i, r0 in enumerate(seed):
        first = (1 << (rb - 1)) + (i << (rb - 1 - k))
        for m in (first, first + (1 << (rb - 1 - k)) - 1):   # err is monotonic in m
            err = ((1 << (2 * rb - 1)) - m * r0) >> cfg.RECIP_ERR_SHIFT
            lo, hi = min(lo, err), max(hi, err)
    return max(lo.bit_length(), (-hi - 1).bit_length(), hi.bit_length()) + 1


class Softmax(wiring.Component):
    """The fixed-point softmax of rows of integer scores, with the confidence check.

    Parameters
    ----------
    config : QKConfig
        ``scores_per_cycle`` (lanes ``L``), ``n_max``, ``score_bits`` and the softmax formats.

    Attributes
    ----------
    i : In(stream) of :func:`input_beat`
        A row, ``L`` scores per beat; ``last`` ends it, and so does its
        ``ceil(n_max / L)``-th beat. Every row needs at least one alive score (otherwise
        its outputs are unspecified, but the block carries on).
    o : Out(stream) of :func:`output_beat`
        The row's probabilities, one beat per input beat, in order.
    scale_mant, scale_shift : In
        The scale constant (:func:`attnforge.sim.softmax.scale_constant`), read with a
        row's first beat.
    threshold : In
        The refetch threshold in the probability format
        (:func:`attnforge.sim.softmax.threshold_code`), read with a row's first beat.
    lanes : int
        ``L``, scores per beat.
    latency : int
        Cycles a lone row of ``B`` beats spans from its first input handshake to its last
        output handshake, minus ``3·B`` (see the module docstring).
    """

    def __init__(self, config=QKConfig()):
        if not isinstance(config, QKConfig):
            raise TypeError(f"config must be a QKConfig, not {config!r}")
        self.config = config
        self.lanes = config.scores_per_cycle
        self.beats_max = -(-config.n_max // self.lanes)
        # d·mant: d has score_bits > 18, so two multipliers and a sum stage
        self._dm_latency = multiply_latency(unsigned(config.score_bits),
                                            unsigned(config.SCALE_MANT_BITS))
        # the reciprocal's two multiplies and the normalize's
        self._mul_latency = multiply_latency(unsigned(config.RECIP_BITS), unsigned(config.RECIP_BITS))
        self.latency = 2 * ceil_log2(self.lanes) + 25 + self._dm_latency + 3 * self._mul_latency
        super().__init__({
            "i": In(stream.Signature(input_beat(config))),
            "o": Out(stream.Signature(output_beat(config))),
            "scale_mant": In(config.SCALE_MANT_BITS),
            "scale_shift": In(config.SCALE_SHIFT_BITS),
            "threshold": In(config.threshold_bits),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        L = self.lanes
        SB, F, E, G = cfg.score_bits, cfg.score_frac_bits, cfg.sum_frac_bits, cfg.exp_guard_bits
        P, RB, K, EB = cfg.prob_frac_bits, cfg.RECIP_BITS, cfg.RECIP_SEED_BITS, cfg.EXP_BITS
        beat_bits = max(1, ceil_log2(self.beats_max))
        prod_bits = SB + cfg.SCALE_MANT_BITS         # d·mant
        # A shift beyond prod_bits + 1 gives y = 0 just as prod_bits + 1 does.
        shift_max = min((1 << cfg.SCALE_SHIFT_BITS) - 1, prod_bits + 1)
        x_bits = max(prod_bits, shift_max - 1) + 1   # d·mant + half
        # An exp shift beyond E + 2 gives a zero term just as E + 2 does.
        i_max = min((1 << cfg.y_int_bits) - 1, E + 2)

        # ---- Stage 1: receive into a score slot, fold the maximum ------------------------
        entry = data.StructLayout({"score": signed(SB), "alive": 1})
        # Its depth rounded up to a power of two: Yosys maps a 3·2**k-deep memory to RAMs
        # stacked three deep behind a multiplexer (qk's worst path at 8c30c52), a 4·2**k-deep
        # one to deeper, narrower RAMs with none.
        m.submodules.scores = scores = memory.Memory(
            shape=data.ArrayLayout(entry, L), depth=1 << ceil_log2(SCORE_SLOTS << beat_bits),
            init=[])
        s_wr = scores.write_port()
        s_rd = scores.read_port()

        score_state = Array(Signal(2, name=f"score{s}_state") for s in range(SCORE_SLOTS))
        slot_max = Array(Signal(signed(SB), name=f"score{s}_max") for s in range(SCORE_SLOTS))
        slot_last = Array(Signal(beat_bits, name=f"score{s}_last_beat") for s in range(SCORE_SLOTS))
        slot_mant = Array(Signal(cfg.SCALE_MANT_BITS, name=f"score{s}_mant") for s in range(SCORE_SLOTS))
        slot_shift = Array(Signal(range(shift_max + 1), name=f"score{s}_shift") for s in range(SCORE_SLOTS))
        slot_thr = Array(Signal(cfg.threshold_bits, name=f"score{s}_threshold") for s in range(SCORE_SLOTS))

        rs = Signal(range(SCORE_SLOTS))                     # the slot being received
        rbeat = Signal(beat_bits)
        ends = self.i.payload.last | (rbeat == self.beats_max - 1)
        m.d.comb += self.i.ready.eq(score_state[rs] == FREE)
        accept = self.i.valid & self.i.ready
        m.d.comb += [
            s_wr.addr.eq(Cat(rbeat, rs)),
            s_wr.en.eq(accept),
        ]
        for lane in range(L):
            m.d.comb += [
                s_wr.data[lane].score.eq(self.i.payload.scores[lane]),
                s_wr.data[lane].alive.eq(self.i.payload.alive[lane]),
            ]
        with m.If(accept):
            with m.If(rbeat == 0):
                m.d.sync += [
                    slot_mant[rs].eq(self.scale_mant),
                    slot_shift[rs].eq(Mux(self.scale_shift > shift_max, shift_max, self.scale_shift)),
                    slot_thr[rs].eq(self.threshold),
                ]
            with m.If(ends):
                m.d.sync += [
                    slot_last[rs].eq(rbeat),
                    score_state[rs].eq(FILLING),
                    rs.eq(_next_slot(rs, SCORE_SLOTS)),
                    rbeat.eq(0),
                ]
            with m.Else():
                m.d.sync += rbeat.eq(rbeat + 1)

        # The maximum: the beat's lanes registered, a registered max tree, a running max.
        lanes_in = [(self.i.payload.alive[lane], self.i.payload.scores[lane]) for lane in range(L)]
        mx0 = stage(m, "mx_in", items=[Cat(*item) for item in lanes_in],
                     valid=accept, first=rbeat == 0, last=ends, slot=rs)
        best, meta, _ = tree(m, "mx", [split(reg, item) for reg, item in zip(mx0.items, lanes_in)],
                              _max_alive, valid=mx0.valid, first=mx0.first, last=mx0.last,
                              slot=mx0.slot)
        run_alive = Signal()
        run_max = Signal(signed(SB))
        new_alive, new_max = _max_alive((run_alive & ~meta["first"], run_max), best)
        with m.If(meta["valid"]):
            m.d.sync += [run_alive.eq(new_alive), run_max.eq(new_max)]
            with m.If(meta["last"]):
                m.d.sync += [
                    slot_max[meta["slot"]].eq(new_max),
                    score_state[meta["slot"]].eq(FULL),
                ]

        # ---- Stage 2: terms and their sum --------------------------------------------------
        term_entry = data.StructLayout({"term": unsigned(E + 1), "alive": 1})
        m.submodules.terms = terms = memory.Memory(
            shape=data.ArrayLayout(term_entry, L), depth=TERM_SLOTS << beat_bits, init=[])
        t_wr = terms.write_port()
        t_rd = terms.read_port()
        m.submodules.exp_rom = exp_rom = memory.Memory(
            shape=unsigned(EB + 1), depth=cfg.exp_table_size, init=cfg.exp_table())
        exp_ports = [exp_rom.read_port() for _ in range(L)]

        term_state = Array(Signal(2, name=f"term{s}_state") for s in range(TERM_SLOTS))
        term_last = Array(Signal(beat_bits, name=f"term{s}_last_beat") for s in range(TERM_SLOTS))
        term_thr = Array(Signal(cfg.threshold_bits, name=f"term{s}_threshold") for s in range(TERM_SLOTS))
        sh_max = RB + cfg.sum_bits - 1 - G - P      # the normalize shift RB + z − G − P
        sh_bits = unsigned(ceil_log2(sh_max + 1))
        norm_bits = max(EB + 1 + RB, sh_max) + 1     # (term >> G)·r + half
        term_r = Array(Signal(RB, name=f"term{s}_r") for s in range(TERM_SLOTS))
        term_sh = Array(Signal(sh_bits, name=f"term{s}_shift") for s in range(TERM_SLOTS))
        term_half = Array(Signal(norm_bits, name=f"term{s}_half") for s in range(TERM_SLOTS))
        term_mp = Array(Signal(cfg.prob_bits, name=f"term{s}_max_prob") for s in range(TERM_SLOTS))
        term_ref = Array(Signal(name=f"term{s}_refetch") for s in range(TERM_SLOTS))

        ss = Signal(range(SCORE_SLOTS))                     # score slot read by the sum stage
        ts = Signal(range(TERM_SLOTS))                     # term slot it writes
        sbusy = Signal()
        sbeat = Signal(beat_bits)
        s_last = Signal(beat_bits)
        # The row's max and scale stay in their slot while it is read: the pipeline takes
        # them from there, so starting a row loads only a few registers.
        with m.If(~sbusy & (score_state[ss] == FULL) & (term_state[ts] == FREE)):
            m.d.sync += [
                sbusy.eq(1),
                sbeat.eq(0),
                s_last.eq(slot_last[ss]),
                term_last[ts].eq(slot_last[ss]),
                term_thr[ts].eq(slot_thr[ss]),
            ]
        m.d.comb += s_rd.addr.eq(Cat(sbeat, ss))
        with m.If(sbusy):
            m.d.sync += sbeat.eq(sbeat + 1)
            with m.If(sbeat == s_last):
                m.d.sync += [
                    sbusy.eq(0),
                    score_state[ss].eq(FREE),
                    ss.eq(_next_slot(ss, SCORE_SLOTS)),
                    term_state[ts].eq(FILLING),
                    ts.eq(_next_slot(ts, TERM_SLOTS)),
                ]
        # A: the score buffer's read register holds the beat.
        a = stage(m, "sa", valid=sbusy, first=sbeat == 0, last=sbeat == s_last, beat=sbeat,
                   slot=ts, max=slot_max[ss], mant=slot_mant[ss], shift=slot_shift[ss],
                   half=(Const(1, x_bits + 1) << slot_shift[ss] >> 1)[:x_bits])
        lanes = range(L)
        # A': a fabric register after the block RAM (its clock-to-out is slow).
        a = stage(m, "sa2", **vars(a), score=[s_rd.data[n].score for n in lanes],
                  alive=[s_rd.data[n].alive for n in lanes])
        # B: d = max − s, in the fabric; then d·mant (the operands' route into the DSPs
        # gets a cycle of its own).
        a = stage(m, "sb", **{k: v for k, v in vars(a).items() if k not in ("max", "score")},
                  d=[(a.max - a.score[n])[:SB] for n in lanes])
        dm = [multiply(m, f"dm{n}", a.d[n], a.mant, platform=platform) for n in lanes]
        c = SimpleNamespace(valid=a.valid, first=a.first, last=a.last, beat=a.beat, slot=a.slot,
                            shift=a.shift, half=a.half, alive=a.alive)
        for k in range(self._dm_latency):
            c = stage(m, f"sc{k}", **vars(c))
        # D: + half (round half up).
        d = stage(m, "sd", valid=c.valid, first=c.first, last=c.last, beat=c.beat, slot=c.slot,
                   shift=c.shift, alive=c.alive,
                   x=[(dm[n] + c.half)[:x_bits] for n in lanes])
        # E: >> the shift's multiple of 8.
        e = stage(m, "se", valid=d.valid, first=d.first, last=d.last, beat=d.beat, slot=d.slot,
                   shift=d.shift[:3], alive=d.alive,
                   x=[d.x[n] >> Cat(Const(0, 3), d.shift[3:]) for n in lanes])
        # F: >> the rest; F': saturate to y_max.
        f = stage(m, "sf", valid=e.valid, first=e.first, last=e.last, beat=e.beat, slot=e.slot,
                  alive=e.alive, x=[(e.x[n] >> e.shift)[:x_bits] for n in lanes])
        f = stage(m, "sf2", valid=f.valid, first=f.first, last=f.last, beat=f.beat, slot=f.slot,
                  alive=f.alive, y=[Mux(f.x[n][cfg.y_bits:].any(), cfg.y_max, f.x[n][:cfg.y_bits])
                                    for n in lanes])
        # G: the exp ROM reads frac(y); int(y) clamped to i_max.
        for n in lanes:
            m.d.comb += exp_ports[n].addr.eq(f.y[n][:F])
        ints = [f.y[n][F:] for n in lanes]
        g = stage(m, "sg", valid=f.valid, first=f.first, last=f.last, beat=f.beat, slot=f.slot,
                   alive=f.alive, i=[Mux(v > i_max, i_max, v)[:ceil_log2(i_max + 1)] for v in ints])
        # G': a fabric register after the ROM.
        g = stage(m, "sg2", **vars(g), exp=[exp_ports[n].data for n in lanes])
        # H: (EXP[f] << G) + 2**(i−1).
        h = stage(m, "sh", valid=g.valid, first=g.first, last=g.last, beat=g.beat, slot=g.slot,
                   alive=g.alive, i=g.i,
                   v=[((g.exp[n] << G) + (Const(1, E + 3) << g.i[n] >> 1))[:E + 2] for n in lanes])
        # I: >> i; dead lanes 0. The terms go to the term buffer and the adder tree.
        t = stage(m, "si", valid=h.valid, first=h.first, last=h.last, beat=h.beat, slot=h.slot,
                   alive=h.alive,
                   term=[Mux(h.alive[n], h.v[n] >> h.i[n], 0)[:E + 1] for n in lanes])
        m.d.comb += [t_wr.addr.eq(Cat(t.beat, t.slot)), t_wr.en.eq(t.valid)]
        for n in lanes:
            m.d.comb += [t_wr.data[n].term.eq(t.term[n]), t_wr.data[n].alive.eq(t.alive[n])]
        total, meta, _ = tree(m, "sum", list(t.term), lambda x, y: x + y,
                               valid=t.valid, first=t.first, last=t.last, slot=t.slot)
        acc = Signal(cfg.sum_bits)
        with m.If(meta["valid"]):
            m.d.sync += acc.eq(Mux(meta["first"], 0, acc) + total)
        done = stage(m, "sum_done", valid=meta["valid"] & meta["last"], slot=meta["slot"])

        # ---- The reciprocal, max_prob and the decision (once per row) ---------------------
        # Leading one z of the sum; everything that depends on z alone is a constant per z:
        # the normalizing shift z − RB + 1, the normalize shift RB + z − G − P (> 0, as
        # z ≥ E) and its rounding half.
        norm_shift = Signal(range(cfg.sum_bits))
        sh = Signal(sh_bits)
        half = Signal(norm_bits)
        for bit in range(cfg.sum_bits):
            with m.If(acc[bit]):
                m.d.comb += [
                    norm_shift.eq(max(bit - (RB - 1), 0)),
                    sh.eq(max(RB + bit - G - P, 0)),
                    half.eq((1 << max(RB + bit - G - P, 0)) >> 1),
                ]
        r1 = stage(m, "r1", valid=done.valid, slot=done.slot, s=acc, norm_shift=norm_shift,
                   sh=sh, half=half)
        # mant = S >> (z − RB + 1): RB bits, leading one at RB − 1.
        r2 = stage(m, "r2", valid=r1.valid, slot=r1.slot, sh=r1.sh, half=r1.half,
                   mant=(r1.s >> r1.norm_shift)[:RB])
        m.submodules.seed_rom = seed_rom = memory.Memory(
            shape=unsigned(RB), depth=1 << K, init=cfg.recip_seed_table())
        seed_port = seed_rom.read_port(domain="comb")       # small: LUTs
        m.d.comb += seed_port.addr.eq(r2.mant[RB - 1 - K:RB - 1])
        # m·r0 (the multiplier's latency in stages r3…).
        mr0 = multiply(m, "mr0", r2.mant, seed_port.data, platform=platform)
        r4 = SimpleNamespace(valid=r2.valid, slot=r2.slot, sh=r2.sh, half=r2.half,
                             r0=seed_port.data)
        for k in range(self._mul_latency):
            r4 = stage(m, f"r3_{k}", **vars(r4))
        err_bits = _recip_err_bits(cfg)
        diff = Signal(signed(2 * RB + 1))
        m.d.comb += diff.eq((1 << (2 * RB - 1)) - mr0)
        # r0·err (stages r5…).
        r0err = multiply(m, "r0err", r4.r0, (diff >> cfg.RECIP_ERR_SHIFT)[:err_bits].as_signed(),
                         platform=platform)
        r6 = r4
        for k in range(self._mul_latency):
            r6 = stage(m, f"r5_{k}", **vars(r6))
        # The Newton correction, rounded (r6'), then r = min(r0 + correction, 2**RB − 1) (r7).
        cn = 2 * RB - 1 - cfg.RECIP_ERR_SHIFT
        r6 = stage(m, "r6b", valid=r6.valid, slot=r6.slot, sh=r6.sh, half=r6.half, r0=r6.r0,
                   corr=(r0err + (1 << (cn - 1))) >> cn)
        step = Signal(signed(len(r6.corr) + 2))
        m.d.comb += step.eq(r6.r0 + r6.corr)
        r7 = stage(m, "r7", valid=r6.valid, slot=r6.slot, sh=r6.sh, half=r6.half,
                   r=Mux(step > (1 << RB) - 1, (1 << RB) - 1, step)[:RB])
        # max_prob: the normalize step for the term 1.0, add then shift.
        r8 = stage(m, "r8", valid=r7.valid, slot=r7.slot, sh=r7.sh, half=r7.half, r=r7.r,
                   x=(Cat(Const(0, EB), r7.r) + r7.half)[:norm_bits])
        r9 = stage(m, "r9", valid=r8.valid, slot=r8.slot, sh=r8.sh, half=r8.half, r=r8.r,
                   mp=(r8.x >> r8.sh)[:cfg.prob_bits])
        with m.If(r9.valid):
            m.d.sync += [
                term_r[r9.slot].eq(r9.r),
                term_sh[r9.slot].eq(r9.sh),
                term_half[r9.slot].eq(r9.half),
                term_mp[r9.slot].eq(r9.mp),
                term_ref[r9.slot].eq(r9.mp < term_thr[r9.slot]),
                term_state[r9.slot].eq(FULL),
            ]

        # ---- Stage 3: normalize, with output backpressure ----------------------------------
        en = Signal()
        m.d.comb += en.eq(~self.o.valid | self.o.ready)
        ns = Signal(range(TERM_SLOTS))
        nbusy = Signal()
        nbeat = Signal(beat_bits)
        n_last = Signal(beat_bits)
        # The row's constants are copied from its slot into registers as the row starts (the
        # cycle before its first beat issues), so no slot multiplexer sits in front of the
        # pipeline's registers. The terms' read address and the constants' slot have counters
        # of their own that step with ``nbeat`` and ``ns`` (so the block RAMs' address nets,
        # the constants' multiplexers and the slot states' are not one net).
        rd_slot = Signal.like(ns, name="rd_slot")
        rd_beat = Signal.like(nbeat, name="rd_beat")
        row_slot = Signal.like(ns, name="row_slot")
        row = SimpleNamespace(r=Signal.like(term_r[0], name="row_r"),
                              sh=Signal.like(term_sh[0], name="row_sh"),
                              half=Signal.like(term_half[0], name="row_half"),
                              mp=Signal.like(term_mp[0], name="row_mp"),
                              ref=Signal(name="row_ref"))
        start = ~nbusy & (term_state[ns] == FULL)
        with m.If(start):
            m.d.sync += [nbusy.eq(1), nbeat.eq(0), rd_beat.eq(0), n_last.eq(term_last[ns])]
        with m.If(~nbusy):
            m.d.sync += [row.r.eq(term_r[row_slot]), row.sh.eq(term_sh[row_slot]),
                         row.half.eq(term_half[row_slot]), row.mp.eq(term_mp[row_slot]),
                         row.ref.eq(term_ref[row_slot])]
        issue = nbusy & en
        m.d.comb += [t_rd.addr.eq(Cat(rd_beat, rd_slot)), t_rd.en.eq(en)]
        with m.If(issue):
            m.d.sync += [nbeat.eq(nbeat + 1), rd_beat.eq(rd_beat + 1)]
            with m.If(nbeat == n_last):
                m.d.sync += [nbusy.eq(0), term_state[ns].eq(FREE), ns.eq(_next_slot(ns, TERM_SLOTS)),
                             rd_slot.eq(_next_slot(rd_slot, TERM_SLOTS)),
                             row_slot.eq(_next_slot(row_slot, TERM_SLOTS))]
        n0 = stage(m, "n0", en=en, valid=issue, last=nbeat == n_last, **vars(row))
        # A fabric register after the block RAM.
        n0 = stage(m, "n0b", en=en, **vars(n0), alive=Cat(t_rd.data[n].alive for n in lanes),
                   t=[t_rd.data[n].term[G:] for n in lanes])
        # (term >> G)·r.
        tr = [multiply(m, f"nm{n}", n0.t[n], n0.r, en=en, platform=platform) for n in lanes]
        n2 = SimpleNamespace(valid=n0.valid, last=n0.last, sh=n0.sh, half=n0.half, mp=n0.mp,
                             ref=n0.ref, alive=n0.alive)
        for k in range(self._mul_latency):
            n2 = stage(m, f"n1_{k}", en=en, **vars(n2))
        n3 = stage(m, "n3", en=en, valid=n2.valid, last=n2.last, sh=n2.sh, mp=n2.mp, ref=n2.ref,
                    alive=n2.alive, x=[(tr[n] + n2.half)[:norm_bits] for n in lanes])
        out = self.o.payload
        with m.If(en):
            m.d.sync += [
                self.o.valid.eq(n3.valid),
                out.last.eq(n3.last),
                out.alive.eq(n3.alive),
                out.max_prob.eq(n3.mp),
                out.refetch.eq(n3.ref),
            ]
            m.d.sync += [out.probs[n].eq((n3.x[n] >> n3.sh)[:cfg.prob_bits]) for n in lanes]
        return m
