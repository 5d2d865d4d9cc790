"""Testbench of the ``qk`` block: the cocotb test, and the host side that runs and checks it.

The memory is cocotbext-axi's ``AxiRamRead`` on the block's AXI port, with random AR
acceptance and random R-channel stalls (its pause generators); each head's key planes are
laid at their own address, as :func:`attnforge.sim.qk.memory_image` packs them. Heads,
queries and outputs go through the project's stream drivers with random valid gaps and
ready backpressure. The host side (:func:`simulate`) turns the observed beats into
probabilities, decisions, bytes and cycles per row; :func:`compare` checks them bit for
bit against :func:`attnforge.sim.qk.attention_probs`, and the block's counters against
their sums.
"""

import dataclasses
import random

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from ..configs.qk import MODES, QKConfig
from ..sim import qk as model
from ..sim.softmax import ScaleConstant, scale_constant, threshold_code
from .harness import start
from .streams import StreamSink, StreamSource

__all__ = ["Head", "simulate", "compare", "regression", "regression_heads", "QK_JOB"]

#: where the first head's planes go: beat aligned, just below a 4 KB boundary, so bursts split
MEMORY_BASE = 0x2FC0
#: the modes' codes on the head stream (rtl/qk_block.py)
MODE_CODES = {"summarization": 0, "generation": 1}
COUNTERS = ("rows", "refetched", "squashed", "msb_bytes", "lsb_bytes", "cycles")


def _pauses(rng, rate):
    """An endless pause generator: ``True`` (stall) with probability ``1 - rate``."""
    while True:
        yield rate < 1.0 and rng.random() >= rate


@cocotb.test()
async def qk_job(dut):
    from cocotbext.axi import AxiRamRead, AxiReadBus

    bench = await start(dut)
    job = bench.job
    cfg_d = int(bench.manifest["parameters"]["head_dim"])
    lanes = int(bench.manifest["parameters"]["multipliers"]) // cfg_d
    ram = AxiRamRead(AxiReadBus.from_prefix(dut, "axi_"), dut.clk, dut.rst, size=int(job["memory_size"]))
    ram.write(0, job["memory"].tobytes())
    mem_rng = random.Random(int(job["seed"]) + 1000)
    ram.ar_channel.set_pause_generator(_pauses(mem_rng, bench.rate("ar_rate")))
    ram.r_channel.set_pause_generator(_pauses(mem_rng, bench.rate("r_rate")))
    dut.clear.value = 0

    heads, rows = [], []
    q, row_counts = job["q"], job["rows"]
    first = 0
    for h in range(len(row_counts)):
        heads.append({name: int(job[name][h]) for name in
                      ("n_keys", "mode", "msb_base", "lsb_base", "scale_mant", "scale_shift", "threshold")}
                     | {"alive": int(job["alive_words"][h])})
        count = int(row_counts[h])
        rows += [{"q": q[first + r].tolist(), "last": int(r == count - 1)} for r in range(count)]
        first += count
    head_src = StreamSource(dut, "head", dut.clk, bench.counter, bench.payload("head"),
                            rate=bench.rate("in_rate"), rng=bench.rng)
    q_src = StreamSource(dut, "q", dut.clk, bench.counter, bench.payload("q"),
                         rate=bench.rate("in_rate"), rng=random.Random(int(job["seed"]) + 1))
    sink = StreamSink(dut, "o", dut.clk, bench.counter, bench.payload("o"),
                      rate=bench.rate("out_rate"), rng=random.Random(int(job["seed"]) + 2))
    cocotb.start_soon(head_src.send(heads))
    cocotb.start_soon(q_src.send(rows))
    await sink.recv(lambda got: sum(beat["last"] for beat in got) >= len(rows))
    # The counters settle a cycle after the last beat; the block must then be idle.
    for _ in range(4):
        await RisingEdge(dut.clk)
    out = sink.beats
    bench.save(
        head_cycles=np.array(head_src.accepted, dtype=np.int64),
        q_cycles=np.array(q_src.accepted, dtype=np.int64),
        out_cycles=np.array(sink.cycles, dtype=np.int64),
        probs=np.array([beat["probs"] for beat in out], dtype=np.int64).reshape(len(out), lanes),
        **{name: np.array([beat[name] for beat in out], dtype=np.int64)
           for name in ("alive", "row", "refetched", "max_prob", "msb_bytes", "lsb_bytes", "last")},
        counters=np.array([int(getattr(dut, name).value) for name in COUNTERS], dtype=np.int64),
        head_ready=np.int64(int(dut.head__ready.value)),
    )


@dataclasses.dataclass(frozen=True)
class Head:
    """One head's work: its queries, keys, scale, threshold, reuse mode and alive mask."""
    q: np.ndarray                  #: B×D, 12-bit signed
    keys: np.ndarray               #: N×D, key_bits signed
    scale: ScaleConstant
    threshold: int                 #: the register value (threshold_code)
    mode: str
    alive: np.ndarray              #: bool N
    kind: str = "random"           #: what the test calls it

    @classmethod
    def make(cls, q, keys, scale, threshold, mode, alive=None, kind="given", cfg=QKConfig()):
        """Validate and normalize (scale: float or ScaleConstant; threshold: float in [0, 1])."""
        q, keys = model.check_queries(q, cfg), model.check_keys(keys, cfg)
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not one of {', '.join(MODES)}")
        alive = np.ones(len(keys), dtype=bool) if alive is None else np.asarray(alive)
        if alive.dtype != bool or alive.shape != (len(keys),):
            raise ValueError(f"alive must be bool of shape ({len(keys)},), not {alive.dtype} {alive.shape}")
        if not alive.any():
            raise ValueError("alive must keep at least one key")
        const = scale if isinstance(scale, ScaleConstant) else scale_constant(scale, cfg)
        code = threshold if isinstance(threshold, (int, np.integer)) else threshold_code(threshold, cfg)
        return cls(q, keys, const, int(code), mode, alive, kind)

    def expected(self, cfg):
        return model.attention_probs(self.q, self.keys, self.scale, cfg, self.threshold, self.mode,
                                     self.alive)


def _job(heads, cfg, *, in_rate, out_rate, ar_rate, r_rate, seed):
    """The job arrays: each head's planes in the memory image, its beat fields, the queries."""
    image = bytearray(MEMORY_BASE)
    fields = {name: [] for name in ("n_keys", "mode", "msb_base", "lsb_base", "scale_mant",
                                    "scale_shift", "threshold")}
    for head in heads:
        layout = model.plane_layout(len(head.keys), cfg)
        base = len(image)
        image += model.memory_image(head.keys, cfg)
        image += bytes(-len(image) % 4096 + 0x7C0)      # the next head straddles 4 KB too
        for name, value in (("n_keys", len(head.keys)), ("mode", MODE_CODES[head.mode]),
                            ("msb_base", base + layout.msb_base), ("lsb_base", base + layout.lsb_base),
                            ("scale_mant", head.scale.mant), ("scale_shift", head.scale.shift),
                            ("threshold", head.threshold)):
            fields[name].append(value)
    # The alive masks as Python ints do not fit an int64 array: keep them as decimal strings.
    alive_words = np.array([str(sum(1 << int(n) for n in np.flatnonzero(head.alive))) for head in heads])
    return {
        "memory": np.frombuffer(bytes(image), dtype=np.uint8),
        "memory_size": np.int64(1 << max(16, (len(image) - 1).bit_length())),
        "q": np.concatenate([head.q for head in heads]),
        "rows": np.array([len(head.q) for head in heads], dtype=np.int64),
        "alive_words": alive_words,
        **{name: np.array(values, dtype=np.int64) for name, values in fields.items()},
        "in_rate": in_rate, "out_rate": out_rate, "ar_rate": ar_rate, "r_rate": r_rate, "seed": seed,
    }


def simulate(heads, cfg=QKConfig(), *, sim="verilator", in_rate=1.0, out_rate=1.0, ar_rate=1.0,
             r_rate=1.0, seed=0, build_root=None, waves=False, progress=None):
    """Run ``heads`` (a list of :class:`Head`) back to back through the generated block.

    Returns a dict: per head, ``probs`` (B×N), ``refetched`` (bool B), ``msb_bytes`` and
    ``lsb_bytes`` (B) and ``max_prob`` (B, of the emitted pass); over all rows ``row``
    (the row numbers the block reported), ``cycles`` (each row's last output beat minus the
    previous row's; the first row from its head's acceptance, inclusive), ``total_cycles``
    (first head accepted to last beat out, inclusive) and ``counters`` (a dict).
    """
    from ..gen.blocks import generate
    from .runner import run_job

    sv, manifest = generate("qk", cfg, build_root=build_root)
    job = _job(heads, cfg, in_rate=in_rate, out_rate=out_rate, ar_rate=ar_rate, r_rate=r_rate,
               seed=seed)
    result = run_job(sv, "qk", "attnforge.tb.qk", job, sim=sim, manifest=manifest,
                     build_root=build_root, waves=waves, progress=progress)
    lanes = cfg.scores_per_cycle
    ends = np.flatnonzero(result["last"])
    total_rows = sum(len(head.q) for head in heads)
    if len(ends) != total_rows:
        raise AssertionError(f"expected {total_rows} rows out, saw {len(ends)} last beats")
    starts = np.concatenate([[0], ends[:-1] + 1])
    per_head, row = [], 0
    for head in heads:
        n, b = len(head.keys), len(head.q)
        beats = -(-n // lanes)
        rows = range(row, row + b)
        for r in rows:
            if ends[r] - starts[r] + 1 != beats:
                raise AssertionError(f"row {r}: {ends[r] - starts[r] + 1} beats out, expected {beats}")
        pick = lambda name: result[name][ends[rows.start:rows.stop]]    # noqa: E731
        probs = np.stack([result["probs"][starts[r]:ends[r] + 1].reshape(-1)[:n] for r in rows])
        per_head.append({"probs": probs, "refetched": pick("refetched").astype(bool),
                         "msb_bytes": pick("msb_bytes"), "lsb_bytes": pick("lsb_bytes"),
                         "max_prob": pick("max_prob"), "row": pick("row")})
        row += b
    last_out = result["out_cycles"][ends]
    head_start = np.repeat(result["head_cycles"], [len(head.q) for head in heads])
    previous = np.concatenate([[head_start[0] - 1], last_out[:-1]])
    cycles = last_out - np.maximum(previous, head_start - 1)
    return {"heads": per_head, "cycles": cycles,
            "total_cycles": int(last_out[-1] - result["head_cycles"][0] + 1),
            "counters": dict(zip(COUNTERS, result["counters"].tolist())),
            "idle": bool(result["head_ready"])}


def compare(heads, result, cfg=QKConfig()):
    """Check a :func:`simulate` result against sim/qk.py bit for bit; raise AssertionError."""
    totals = dict.fromkeys(("rows", "refetched", "msb_bytes", "lsb_bytes"), 0)
    for h, (head, got) in enumerate(zip(heads, result["heads"])):
        want = head.expected(cfg)
        where = f"head {h} ({head.kind}, {head.mode}, N={len(head.keys)})"
        if not np.array_equal(got["row"], np.arange(len(head.q)) % (1 << 16)):
            raise AssertionError(f"{where}: rows out of order: {got['row'].tolist()[:16]}")
        if not np.array_equal(got["refetched"], want.refetched):
            bad = np.flatnonzero(got["refetched"] != want.refetched)[:8]
            raise AssertionError(f"{where}: refetch decisions differ at rows {bad.tolist()} "
                                 f"(model max_prob {want.max_prob[bad].tolist()}, threshold {head.threshold})")
        bad_rows = np.flatnonzero((got["probs"] != want.probs).any(axis=1))
        if len(bad_rows):
            r = bad_rows[0]
            col = np.flatnonzero(got["probs"][r] != want.probs[r])[:6]
            raise AssertionError(f"{where}: probabilities differ in {len(bad_rows)} rows; row {r} "
                                 f"keys {col.tolist()}: got {got['probs'][r][col].tolist()}, "
                                 f"want {want.probs[r][col].tolist()}")
        for name in ("msb_bytes", "lsb_bytes"):
            if not np.array_equal(got[name], getattr(want, name)):
                raise AssertionError(f"{where}: {name} per row differ: got {got[name].tolist()[:8]}, "
                                     f"want {getattr(want, name).tolist()[:8]}")
        totals["rows"] += len(head.q)
        totals["refetched"] += int(want.refetched.sum())
        totals["msb_bytes"] += int(want.msb_bytes.sum())
        totals["lsb_bytes"] += int(want.lsb_bytes.sum())
    for name, value in totals.items():
        if result["counters"][name] != value:
            raise AssertionError(f"counter {name} = {result['counters'][name]}, the rows add up to {value}")
    if not result["idle"]:
        raise AssertionError("the block is still busy after the last row left")


# ---- the regression ---------------------------------------------------------------------

def regression_heads(cfg, seed):
    """Heads of every kind for one seed: random, flat (all keys equal: every row refetches),
    one dominant key (none does), extremes, N = 1, N = n_max, alive masks with holes, and
    N not a multiple of the lanes; both modes, thresholds 0.05 and 0.1."""
    rng = np.random.default_rng(seed)
    D, lim = cfg.head_dim, 1 << (cfg.key_bits - 1)
    qlim = 1 << (cfg.DATA_BITS - 1)
    mode = MODES[seed % 2]
    other = MODES[(seed + 1) % 2]
    heads = []

    def add(kind, n, keys, q, scale, threshold, mode, alive=None):
        heads.append(Head.make(q, keys, scale, threshold, mode, alive, kind, cfg))

    def rand_keys(n):
        return rng.integers(-lim, lim, (n, D))

    def rand_q(b, spread=qlim):
        return rng.integers(-spread, spread, (b, D))

    n = int(rng.integers(cfg.scores_per_cycle, cfg.n_max + 1))
    # queries of random magnitudes: flat rows that need their LSBs among confident ones
    spread = (qlim >> rng.integers(0, 9, 8))[:, None]
    add("random", n, rand_keys(n), rng.integers(-spread, spread, (8, D)), 8.0 / (qlim * lim), 0.1,
        mode, rng.random(n) < 0.8 if seed % 3 else None)
    add("all_equal", cfg.n_max, np.full((cfg.n_max, D), lim // 3), rand_q(3), 1e-6, 0.05, other)
    dominant = rng.integers(-4, 4, (cfg.n_max, D))
    dominant[int(rng.integers(cfg.n_max))] = lim - 1
    add("dominant", cfg.n_max, dominant, np.full((3, D), qlim - 1), 1e-3, 0.1, mode)
    extremes = np.resize(np.array([-lim, lim - 1, -lim + 1, 0, -1, 1]), (16, D))
    add("extremes", 16, extremes, np.resize(np.array([-qlim, qlim - 1, 1]), (4, D)), 2e-6, 0.1, other)
    add("n1", 1, rand_keys(1), rand_q(2), 1e-4, 0.1, mode)
    holes = np.zeros(cfg.n_max, dtype=bool)
    holes[rng.choice(cfg.n_max, 3, replace=False)] = True
    add("holes", cfg.n_max, rand_keys(cfg.n_max), rand_q(5, 256), 8.0 / (256 * lim), 0.05, other, holes)
    return heads


def stream_rates(seed):
    """Input, output, AR and R rates for a seed: full rate on seed 0, random stalls after."""
    if seed == 0:
        return 1.0, 1.0, 1.0, 1.0
    rng = random.Random(seed)
    return tuple(round(rng.uniform(0.3, 0.9), 2) for _ in range(4))


def regression(cfg, seed, *, sim, build_root=None):
    """One seed of the regression: :func:`regression_heads` back to back, random stalls."""
    heads = regression_heads(cfg, seed)
    in_rate, out_rate, ar_rate, r_rate = stream_rates(seed)
    result = simulate(heads, cfg, sim=sim, in_rate=in_rate, out_rate=out_rate, ar_rate=ar_rate,
                      r_rate=r_rate, seed=seed, build_root=build_root)
    compare(heads, result, cfg)
    counters = result["counters"]
    return (f"{len(heads)} heads, {counters['rows']} rows ({counters['refetched']} refetched, "
            f"{counters['squashed']} passes squashed), rates {in_rate}/{out_rate}/{ar_rate}/{r_rate}, "
            f"{result['total_cycles']} cycles")


# ---- attnforge run qk -------------------------------------------------------------------------

class QKJob:
    """``attnforge run qk``: queries and one head's keys in, probabilities and traffic out."""

    def load(self, arrays, cfg):
        missing = [name for name in ("q", "keys", "scale") if name not in arrays]
        if missing:
            raise ValueError(f"no {' or '.join(missing)} array (expected q: int B×D, keys: int N×D, "
                             f"scale: float; optional alive: bool N, mode: str, threshold: float; "
                             f"found {', '.join(arrays) or 'none'})")
        scale = arrays["scale"]
        if scale.ndim != 0 or not np.issubdtype(scale.dtype, np.number):
            raise ValueError(f"scale must be one number, not {scale.dtype} {scale.shape}")
        mode = str(arrays["mode"]) if "mode" in arrays else "summarization"
        threshold = float(arrays["threshold"]) if "threshold" in arrays else 0.1
        alive = arrays.get("alive")
        if alive is not None and alive.dtype != bool:
            raise ValueError(f"alive must be bool, not {alive.dtype}")
        return {"head": Head.make(arrays["q"], arrays["keys"], float(scale), threshold, mode, alive,
                                  "input", cfg)}

    def describe(self, inputs):
        head = inputs["head"]
        return f"{len(head.q)} rows against N={len(head.keys)} keys ({head.mode})"

    def run(self, inputs, cfg, *, sim, build_root=None, waves=False, progress=None):
        from ..gen.blocks import JobResult
        head = inputs["head"]
        result = simulate([head], cfg, sim=sim, build_root=build_root, waves=waves, progress=progress)
        mismatch = None
        try:
            compare([head], result, cfg)
        except AssertionError as exc:
            mismatch = str(exc)
        got = result["heads"][0]
        dram = got["msb_bytes"] + got["lsb_bytes"]
        check = f"MISMATCH: {mismatch}" if mismatch else "RTL matches the model bit for bit"
        summary = (f"qk: {len(head.q)} rows × N={len(head.keys)} ({head.mode}), "
                   f"{int(got['refetched'].sum())} refetched, {int(dram.sum())} DRAM bytes, "
                   f"{result['total_cycles']} cycles: {check}")
        arrays = {"probs": got["probs"], "prob_frac_bits": np.int64(cfg.prob_frac_bits),
                  "refetched": got["refetched"], "dram_bytes": dram.astype(np.int64),
                  "cycles": result["cycles"].astype(np.int64),
                  "total_cycles": np.int64(result["total_cycles"])}
        return JobResult(arrays, summary, mismatch)


QK_JOB = QKJob()
