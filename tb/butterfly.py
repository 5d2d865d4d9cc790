"""Testbench of the butterfly array: the cocotb test, and the host side that runs it.

The cocotb test (:func:`butterfly_job`) streams the job's transforms through the generated
array with random valid gaps and ready backpressure and records every output beat with its
cycle. The host side turns that into transforms and cycle counts:

* :func:`simulate_fft` / :func:`compare_fft`: transforms of any lengths back to back,
  checked bit for bit against :func:`attnforge.sim.butterfly.fft` (``"fixed"`` scaling:
  ``scale_log2 = log2 N``); at full rate the cycles must equal
  :func:`attnforge.sim.butterfly.fft_array_cycles` exactly.
* :func:`regression`: one seed of ``attnforge verify butterfly``.
* :data:`FFT_JOB`: ``attnforge run fft``.
* the butterfly FFN (block ``bffn``, :func:`bffn_job`): :class:`FFN` (both layers' weights,
  calibrated shifts and weight stream), :func:`simulate_bffn` / :func:`compare_bffn`
  (bit for bit against :func:`attnforge.sim.butterfly.ffn`), :data:`FFN_BENCH` (``attnforge
  verify bffn``) and :data:`BFFN_JOB` (``attnforge run bffn``).

A complex sample is one ``2·width``-bit element of the payload's ``data`` array, ``re`` in
the low half (the manifest lists ``data`` as ``lanes`` elements of ``2·width`` bits).
"""

import functools

import cocotb
import numpy as np

from ..configs.butterfly import ButterflyConfig
from ..sim import butterfly as model
from ..rtl.ram import CHECKED
from .harness import start
from .streams import StreamSink, StreamSource

__all__ = ["check_fft_batch", "check_butterfly_inputs", "fft_vectors", "fft_regression_batch",
           "mixed_regression_batch", "minilm_fft_rows", "random_twiddle", "weight_writes", "Layer",
           "simulate", "simulate_fft", "simulate_butterfly", "compare", "compare_fft",
           "regression", "FFT_JOB", "BUTTERFLY_JOB", "check_fnet_frames", "simulate_fnet",
           "compare_fnet", "fnet_regression_frames", "FNET_BENCH", "FNET_JOB", "FFN",
           "linear_rows", "simulate_bffn", "compare_bffn", "ffn_regression_rows", "FFN_BENCH",
           "BFFN_JOB"]


# ---- the cocotb test ----------------------------------------------------------------------

def _pack_complex(re, im, width):
    mask = (1 << width) - 1
    return [(int(r) & mask) | (int(i) & mask) << width for r, i in zip(re, im)]


def _unpack_complex(words, width):
    mask, sign = (1 << width) - 1, 1 << (width - 1)
    re = [((w & mask) ^ sign) - sign for w in words]
    im = [(((w >> width) & mask) ^ sign) - sign for w in words]
    return re, im


@cocotb.test()
async def butterfly_job(dut):
    bench = await start(dut)
    job = bench.job
    params = bench.manifest["parameters"]
    lanes, width = int(params["lanes"]), int(params["width"])
    lengths = [int(n) for n in job["lengths"]]
    modes = [int(v) for v in job["modes"]] if "modes" in job else [0] * len(lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int)
    beats = []
    for start_at, n, mode in zip(starts, lengths, modes):
        re, im = job["re"][start_at:start_at + n], job["im"][start_at:start_at + n]
        n_beats = n // lanes
        for beat in range(n_beats):
            span = slice(beat * lanes, (beat + 1) * lanes)
            beats.append({"data": _pack_complex(re[span], im[span], width),
                          "log2n": n.bit_length() - 1, "mode": mode,
                          "last": int(beat == n_beats - 1)})
    source, sink = _stream_ends(bench)
    await _write_weights(bench)
    out = await _stream(bench, source, sink, beats, len(lengths))
    words = [word for beat in out for word in beat["data"]]
    re, im = _unpack_complex(words, width)
    _save(bench, source, sink, re=np.array(re, dtype=np.int64), im=np.array(im, dtype=np.int64))


@cocotb.test()
async def fnet_job(dut):
    bench = await start(dut)
    job = bench.job
    lanes = int(bench.manifest["parameters"]["lanes"])
    shapes = [(int(l), int(d)) for l, d in job["shapes"]]
    beats, at = [], 0
    for l, d in shapes:
        frame = job["x"][at:at + l * d]
        at += l * d
        count = l * d // lanes
        for beat in range(count):
            beats.append({"data": frame[beat * lanes:(beat + 1) * lanes].tolist(),
                          "log2l": l.bit_length() - 1, "log2d": d.bit_length() - 1,
                          "last": int(beat == count - 1)})
    source, sink = _stream_ends(bench)
    out = await _stream(bench, source, sink, beats, len(shapes))
    _save(bench, source, sink, y=np.array([v for beat in out for v in beat["data"]],
                                          dtype=np.int64))


@cocotb.test()
async def bffn_job(dut):
    """The butterfly FFN: both layers' weights through ``w``, then the rows of ``x``."""
    bench = await start(dut)
    job = bench.job
    lanes = int(bench.manifest["parameters"]["lanes"])
    n = int(job["n"])
    rows = job["x"].reshape(-1, n)
    count = n // lanes
    beats = [{"data": row[t * lanes:(t + 1) * lanes].tolist(), "log2n": n.bit_length() - 1,
              "last": int(t == count - 1)} for row in rows for t in range(count)]
    source, sink = _stream_ends(bench)
    await _write_weights(bench)
    out = await _stream(bench, source, sink, beats, len(rows))
    _save(bench, source, sink, y=np.array([v for beat in out for v in beat["data"]],
                                          dtype=np.int64))


def _stream_ends(bench):
    """The source of ``i`` and the sink of ``o``, at the job's rates (idle until used)."""
    dut = bench.dut
    source = StreamSource(dut, "i", dut.clk, bench.counter, bench.payload("i"),
                          rate=bench.rate("in_rate"), rng=bench.rng)
    sink = StreamSink(dut, "o", dut.clk, bench.counter, bench.payload("o"),
                      rate=bench.rate("out_rate"), rng=bench.rng)
    return source, sink


async def _write_weights(bench):
    """The job's weight writes (``w_*`` arrays, ``w_layer`` for the FFN) through ``w``, with
    gaps at the input rate; nothing when the job has none."""
    dut, job = bench.dut, bench.job
    if hasattr(dut, "w__valid"):
        dut.w__valid.value = 0
    if "w_column" not in job:
        return
    layers = job.get("w_layer", np.zeros(len(job["w_pe"]), dtype=np.int64))
    writes = [{"layer": int(layer), "column": int(c), "pe": int(pe), "addr": int(a),
               "coef": [int(v) for v in coef], "shift": int(sh)}
              for layer, c, pe, a, coef, sh in zip(layers, job["w_column"], job["w_pe"],
                                                   job["w_addr"], job["w_coef"], job["w_shift"])]
    loader = StreamSource(dut, "w", dut.clk, bench.counter, bench.payload("w"),
                          rate=bench.rate("in_rate"), rng=bench.rng)
    await loader.send(writes)


async def _stream(bench, source, sink, beats, ends):
    """Send ``beats`` and collect output beats until ``ends`` of them carry ``last``."""
    cocotb.start_soon(source.send(beats))
    await sink.recv(lambda got: sum(beat["last"] for beat in got) >= ends)
    return sink.beats


def _save(bench, source, sink, **arrays):
    """The result: handshake cycles of every beat, the ``last`` flags, the error flag, ``arrays``."""
    bench.save(in_cycles=np.array(source.accepted, dtype=np.int64),
               out_cycles=np.array(sink.cycles, dtype=np.int64),
               last=np.array([beat["last"] for beat in sink.beats], dtype=np.int64),
               error=np.int64(int(bench.dut.error.value)), **arrays)


# ---- inputs -------------------------------------------------------------------------------

def _min_length(cfg):
    return max(cfg.lanes, 2)


def check_fft_batch(re, im, cfg):
    """Validate transforms for the array; return them as lists of int64 vectors.

    ``re`` and ``im`` are B×N arrays or lists of B vectors (``im=None``: real input). Raises
    ``ValueError`` naming the transform and the problem (length not a power of two in
    ``[max(lanes, 2), n_max]``, value outside the signed ``width``-bit range, non-integers).
    """
    re_list = _vectors(re, "re")
    im_list = [np.zeros_like(v) for v in re_list] if im is None else _vectors(im, "im")
    if len(re_list) != len(im_list):
        raise ValueError(f"re holds {len(re_list)} transforms but im holds {len(im_list)}")
    if not re_list:
        raise ValueError("no transforms: re is empty")
    lo = _min_length(cfg)
    for index, (r, i) in enumerate(zip(re_list, im_list)):
        n = len(r)
        if len(i) != n:
            raise ValueError(f"transform {index}: re has {n} samples but im has {len(i)}")
        if n < lo or n > cfg.n_max or n & (n - 1):
            raise ValueError(f"transform {index}: N={n} is out of range: expected a power of two "
                             f"in [{lo}, n_max={cfg.n_max}] (lanes={cfg.lanes})")
        for name, values in (("re", r), ("im", i)):
            if values.min() < cfg.data_min or values.max() > cfg.data_max:
                bad = int(values.min() if values.min() < cfg.data_min else values.max())
                raise ValueError(f"transform {index}: {name} value {bad} is out of range for "
                                 f"width={cfg.width}: expected [{cfg.data_min}, {cfg.data_max}]")
    return re_list, im_list


def _vectors(values, name):
    if isinstance(values, np.ndarray) or not isinstance(values, (list, tuple)):
        values = np.asarray(values)
        if values.ndim != 2:
            raise ValueError(f"{name} must be a 2-D array (B×N), not shape {values.shape}")
        rows = list(values)
    else:
        rows = [np.asarray(v) for v in values]
    out = []
    for index, row in enumerate(rows):
        if row.ndim != 1:
            raise ValueError(f"{name} transform {index} must be 1-D, not shape {row.shape}")
        if not (np.issubdtype(row.dtype, np.integer) or row.dtype == bool):
            raise ValueError(f"{name} values must be integers, not {row.dtype}")
        out.append(row.astype(np.int64))
    return out


def fft_vectors(cfg, n, rng):
    """Named inputs of length ``n``: random and documented edge cases, as ``(re, im)``.

    Full scale (random, extremes, a full-scale complex square wave that saturates, DC at the
    limit), tiny (±1: underflows stage by stage), a bin-exact tone at the documented
    no-saturation magnitude, an impulse, zeros.
    """
    lo, hi = cfg.data_min, cfg.data_max
    t = np.arange(n)
    amp = (1 << (cfg.width - 1)) - 2 * (n.bit_length() - 1)
    bin_ = int(rng.integers(n))
    tone = amp * np.exp(2j * np.pi * bin_ * t / n) / np.sqrt(2)
    impulse = np.zeros(n, dtype=np.int64)
    impulse[int(rng.integers(n))] = hi
    square = np.where(t % 2 == 0, hi, lo)
    return {
        "random": (rng.integers(lo, hi + 1, n), rng.integers(lo, hi + 1, n)),
        "extremes": (rng.choice([lo, hi, 0, -1, 1], n), rng.choice([lo, hi, 0, -1, 1], n)),
        "square": (square, square[::-1].copy()),
        "dc_max": (np.full(n, hi), np.full(n, lo)),
        "tiny": (rng.integers(-1, 2, n), rng.integers(-1, 2, n)),
        "tone": (np.trunc(tone.real).astype(np.int64), np.trunc(tone.imag).astype(np.int64)),
        "impulse": (impulse, np.zeros(n, dtype=np.int64)),
        "zeros": (np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)),
    }


def fft_regression_batch(cfg, seed):
    """One seed's transforms: every length in ``[max(lanes, 2), n_max]``, every kind of
    :func:`fft_vectors`, shuffled so the length changes often. Returns ``(re, im, kinds)``."""
    rng = np.random.default_rng([seed, cfg.width, cfg.n_max, cfg.lanes])
    lengths = []
    n = _min_length(cfg)
    while n <= cfg.n_max:
        lengths.append(n)
        n *= 2
    items = []
    for n in lengths:
        items += [(kind, *pair) for kind, pair in fft_vectors(cfg, n, rng).items()]
    order = rng.permutation(len(items))
    items = [items[i] for i in order]
    return [it[1] for it in items], [it[2] for it in items], [it[0] for it in items]


def minilm_fft_rows(cfg, n, count, *, layer=3, passage=0):
    """Real data: ``count`` MiniLM-L6 hidden-state vectors (tokens of ``passage`` at ``layer``),
    their first ``n`` features quantized to ``width`` bits (one scale over the rows)."""
    from ..sim import minilm
    hidden = np.asarray(_minilm_hidden(passage)[layer][:count, :n], dtype=np.float64)
    q, _ = minilm.quantize_symmetric(hidden, cfg.width)
    return q


@functools.lru_cache(maxsize=4)
def _minilm_hidden(passage):
    from ..sim import minilm
    return minilm.forward(minilm.tokenize(minilm.PASSAGES[passage])).hidden


# ---- host side ----------------------------------------------------------------------------

def weight_writes(q_twiddle, shifts, cfg, *, chained=False):
    """The weight stream of one butterfly layer for the array (``w`` port beats, as arrays).

    ``q_twiddle``: Q2.F ints ``(log2N, N/2, 2, 2)``; ``shifts``: one per stage. Each pair's
    ``(a, b, c, d) = T[k, p].ravel()`` goes to the PE and address of
    :meth:`attnforge.rtl.butterfly.schedule.ArraySchedule.weight_map`, with its stage's shift
    (``chained``: of the chained schedule, for an array fed column to column).
    """
    from ..rtl.butterfly.schedule import ArraySchedule
    q = np.asarray(q_twiddle, dtype=np.int64)
    log2n = q.shape[0]
    places = ArraySchedule(cfg.lanes, cfg.n_max, chained=chained).weight_map(log2n)
    rows = [(c, pe, addr, *q[k, p].ravel(), shifts[k])
            for k in range(log2n) for p, (c, pe, addr) in enumerate(places[k])]
    rows = np.array(rows, dtype=np.int64).reshape(-1, 8)
    return {"w_column": rows[:, 0], "w_pe": rows[:, 1], "w_addr": rows[:, 2],
            "w_coef": rows[:, 3:7], "w_shift": rows[:, 7]}


class Layer:
    """A butterfly linear layer as the array runs it: quantized weights, exponents, shifts.

    ``scaling``: ``"batch"`` (block floating point, one exponent per stage over the batch
    ``x`` it is programmed for: :func:`attnforge.sim.butterfly.butterfly_batch_shifts`),
    ``"static"`` (worst case from the weights alone) or a sequence of per-stage shifts.
    ``chained``: the weights go to an array fed column to column (:func:`weight_writes`).
    """

    def __init__(self, twiddle, cfg, *, x=None, scaling="batch", chained=False):
        self.twiddle = np.asarray(twiddle)
        self.n = 2 * self.twiddle.shape[1]
        self.q, self.exponents = model.quantize_weights(self.twiddle, cfg)
        if isinstance(scaling, str) and scaling == "batch":
            self.shifts = model.butterfly_batch_shifts(np.asarray(x), self.twiddle, cfg)
        elif isinstance(scaling, str) and scaling == "static":
            self.shifts = model.butterfly_static_shifts(self.q, cfg)
        else:
            self.shifts = [int(v) for v in scaling]
        self.scale_log2 = int(sum(self.shifts) + int(np.sum(self.exponents)))
        self.writes = weight_writes(self.q, self.shifts, cfg, chained=chained)

    def model(self, x, cfg):
        return model.butterfly(x, self.twiddle, cfg, scaling=self.shifts)



class FFN:
    """A butterfly FFN as the ``bffn`` block runs it: two :class:`Layer`, one weight stream.

    ``scaling``: ``"batch"`` (both layers calibrated on the batch ``x``:
    :func:`attnforge.sim.butterfly.ffn_batch_shifts`), ``"static"``, or a pair of per-stage
    shift sequences. ``writes`` holds layer 1's beats then layer 2's (placed by the chained
    schedule), with ``w_layer``; ``scale_log2`` is the two layers' sum.
    """

    def __init__(self, twiddle1, twiddle2, cfg, *, x=None, scaling="batch"):
        if isinstance(scaling, str) and scaling == "batch":
            scaling = model.ffn_batch_shifts(np.asarray(x), twiddle1, twiddle2, cfg)
        elif isinstance(scaling, str):
            scaling = (scaling, scaling)
        self.layers = (Layer(twiddle1, cfg, scaling=scaling[0]),
                       Layer(twiddle2, cfg, scaling=scaling[1], chained=True))
        self.n = self.layers[0].n
        self.scale_log2 = sum(layer.scale_log2 for layer in self.layers)
        self.writes = {name: np.concatenate([layer.writes[name] for layer in self.layers])
                       for name in self.layers[0].writes}
        self.writes["w_layer"] = np.concatenate(
            [np.full(len(layer.writes["w_pe"]), k, dtype=np.int64)
             for k, layer in enumerate(self.layers)])

    def model(self, x, cfg):
        first, second = self.layers
        return model.ffn(x, first.twiddle, second.twiddle, cfg, scaling1=first.shifts,
                         scaling2=second.shifts)


def check_butterfly_inputs(x, twiddle, cfg):
    """Validate a butterfly layer's input ``x`` (int B×N) and ``twiddle`` (log2N × N/2 × 2 × 2)."""
    if not cfg.linear:
        raise ValueError("this array has no butterfly-linear mode (linear=0): set linear=1")
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (B×N), not shape {x.shape}")
    x_list, _ = check_fft_batch(x, None, cfg)
    n = x.shape[1]
    stages = n.bit_length() - 1
    twiddle = np.asarray(twiddle)
    if twiddle.shape != (stages, n // 2, 2, 2):
        raise ValueError(f"twiddle has shape {twiddle.shape}: expected {(stages, n // 2, 2, 2)} "
                         f"(log2N × N/2 × 2 × 2) for N={n}")
    if not (np.issubdtype(twiddle.dtype, np.floating) or np.issubdtype(twiddle.dtype, np.integer)):
        raise ValueError(f"twiddle must hold real numbers, not {twiddle.dtype}")
    if np.issubdtype(twiddle.dtype, np.floating) and not np.all(np.isfinite(twiddle)):
        raise ValueError("twiddle holds NaN or infinite values")
    if np.issubdtype(twiddle.dtype, np.integer):
        model.quantize_coefs(twiddle, cfg)          # raises with the range
    return np.stack(x_list), twiddle


def simulate(re, im, cfg=ButterflyConfig(), *, modes=None, layer=None, sim="verilator",
             in_rate=1.0, out_rate=1.0, seed=0, build_root=None, waves=False, progress=None):
    """Stream transforms back to back through the generated array; return outputs and cycles.

    ``re``/``im``: B×N arrays or lists of B vectors of any valid lengths (``im=None``: real).
    ``modes``: per transform, 0 (FFT) or 1 (butterfly linear with ``layer``, a
    :class:`Layer` whose weights are written first; its transforms must have its N).
    Returns a dict: ``re``, ``im`` (B×N int64, or lists for mixed lengths), ``scale_log2``
    (B), ``cycles`` (B: first input beat accepted to last output beat, inclusive),
    ``total_cycles``, ``first_in``, ``last_out`` (B, cycle numbers), ``error`` (the array's
    sticky error flag at the end).
    """
    from ..gen.blocks import generate
    from .runner import run_job

    re_list, im_list = check_fft_batch(re, im, cfg)
    lengths = np.array([len(v) for v in re_list], dtype=np.int64)
    modes = np.zeros(len(re_list), dtype=np.int64) if modes is None else np.asarray(modes, dtype=np.int64)
    if len(modes) != len(re_list):
        raise ValueError(f"{len(modes)} modes for {len(re_list)} transforms")
    if np.any(modes == model.MODE_REAL):
        if layer is None:
            raise ValueError("butterfly-linear transforms need a layer (weights)")
        wrong = np.flatnonzero((modes == model.MODE_REAL) & (lengths != layer.n))
        if wrong.size:
            raise ValueError(f"transform {wrong[0]}: N={lengths[wrong[0]]} but the layer's "
                             f"weights are for N={layer.n}")
    sv, manifest = generate("butterfly", cfg, build_root=build_root, platform=CHECKED)
    job = {"re": np.concatenate(re_list), "im": np.concatenate(im_list), "lengths": lengths,
           "modes": modes, "in_rate": in_rate, "out_rate": out_rate, "seed": seed}
    if layer is not None:
        job.update(layer.writes)
    result = run_job(sv, "butterfly", "attnforge.tb.butterfly", job, testcase="butterfly_job",
                     sim=sim, manifest=manifest, build_root=build_root, waves=waves,
                     progress=progress)
    first_in, last_out = _handshake_times(result, lengths // cfg.lanes, "transform")
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    out_re = [result["re"][a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    out_im = [result["im"][a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    if len(set(lengths.tolist())) == 1:
        out_re, out_im = np.stack(out_re), np.stack(out_im)
    scale = np.array([layer.scale_log2 if mode == model.MODE_REAL else n.bit_length() - 1
                      for n, mode in zip(lengths.tolist(), modes)], dtype=np.int64)
    return {"re": out_re, "im": out_im, "scale_log2": scale,
            "cycles": last_out - first_in + 1, "total_cycles": int(last_out[-1] - first_in[0] + 1),
            "first_in": first_in, "last_out": last_out, "error": int(result["error"])}


def _handshake_times(result, beats, what):
    """Cycles of each vector's first input and last output handshake, ``beats[i]`` beats each.

    Raises AssertionError when the output's ``last`` flags do not end the vectors there."""
    ends = np.flatnonzero(result["last"])
    expected = np.cumsum(beats) - 1
    if len(ends) != len(expected):
        raise AssertionError(f"expected {len(expected)} {what}s out, saw {len(ends)} last beats")
    if not np.array_equal(ends, expected):
        bad = int(np.flatnonzero(ends != expected)[0])
        raise AssertionError(f"{what} {bad}: last beat is output beat {ends[bad]}, expected "
                             f"{expected[bad]}")
    first_in = result["in_cycles"][np.concatenate([[0], expected[:-1] + 1])]
    return first_in, result["out_cycles"][ends]


def simulate_fft(re, im, cfg=ButterflyConfig(), **options):
    """:func:`simulate` with FFTs only (``"fixed"`` scaling: ``scale_log2 = log2 N``)."""
    return simulate(re, im, cfg, **options)


def simulate_butterfly(x, layer, cfg=ButterflyConfig(), **options):
    """A butterfly linear layer on every row of ``x`` (int B×N): weights written, then the rows.

    Returns :func:`simulate`'s dict with ``y`` (the real outputs) added.
    """
    x = np.asarray(x)
    result = simulate(x, None, cfg, modes=np.full(len(x), model.MODE_REAL), layer=layer,
                      **options)
    result["y"] = result["re"]
    return result


def compare(re, im, result, cfg=ButterflyConfig(), *, modes=None, layer=None,
            check_cycles=False):
    """Check a :func:`simulate` result against sim/butterfly.py bit for bit (FFTs against
    :func:`~attnforge.sim.butterfly.fft`, real transforms against ``layer``'s
    :func:`~attnforge.sim.butterfly.butterfly`, imaginary outputs 0); with ``check_cycles``
    (full-rate runs) also against the cycle model (:func:`~attnforge.sim.butterfly.array_cycles`).
    Raise AssertionError."""
    re_list, im_list = check_fft_batch(re, im, cfg)
    modes = np.zeros(len(re_list), dtype=np.int64) if modes is None else np.asarray(modes)
    if result["error"]:
        raise AssertionError("the array raised its error flag on valid input")
    for index, (r, i, mode) in enumerate(zip(re_list, im_list, modes)):
        if mode == model.MODE_REAL:
            want_re, scale = layer.model(r, cfg)
            want_im = np.zeros_like(want_re)
        else:
            want_re, want_im, scale = model.fft(r, i, cfg)
        got_re, got_im = np.asarray(result["re"][index]), np.asarray(result["im"][index])
        bad = np.flatnonzero((got_re != want_re) | (got_im != want_im))
        if bad.size:
            show = bad[:4]
            what = "butterfly" if mode == model.MODE_REAL else "FFT"
            raise AssertionError(
                f"transform {index} ({what}, N={len(r)}): {bad.size} outputs differ from the "
                f"model, first {bad[:8].tolist()}: rtl {got_re[show].tolist()}+j"
                f"{got_im[show].tolist()}, model {want_re[show].tolist()}+j{want_im[show].tolist()}")
        if int(result["scale_log2"][index]) != int(scale):
            raise AssertionError(f"transform {index}: scale_log2 {result['scale_log2'][index]} "
                                 f"!= model {int(scale)}")
    if check_cycles:
        _check_timing(result, model.array_cycles([len(r) for r in re_list], modes, cfg),
                      "transform")


def _check_timing(result, timing, what):
    """Raise AssertionError where measured cycles differ from the cycle model's ``timing``."""
    if not np.array_equal(result["cycles"], timing["latency"]):
        bad = int(np.flatnonzero(result["cycles"] != timing["latency"])[0])
        raise AssertionError(f"{what} {bad}: {result['cycles'][bad]} cycles, the cycle "
                             f"model says {timing['latency'][bad]}")
    if result["total_cycles"] != timing["total"]:
        raise AssertionError(f"{result['total_cycles']} cycles in all, the cycle model "
                             f"says {timing['total']}")


def compare_fft(re, im, result, cfg=ButterflyConfig(), *, check_cycles=False):
    """:func:`compare` for FFT-only runs."""
    compare(re, im, result, cfg, check_cycles=check_cycles)


def random_twiddle(n, rng, std=0.7):
    """Learned-like butterfly weights: Gaussian, ``(log2N, N/2, 2, 2)``."""
    return rng.normal(0.0, std, (n.bit_length() - 1, n // 2, 2, 2))


def regression(cfg, seed, *, sim, build_root=None):
    """One seed of the regression: every length and kind of FFT input back to back; odd seeds
    with random valid gaps and backpressure, even seeds at full rate with the cycle model.
    With ``linear=1`` a second run mixes butterfly-linear transforms (random learned-like
    weights, N = n_max or n_max/2) among FFTs of other lengths (cycle model too at full
    rate)."""
    from .vectors import stream_rates
    re, im, kinds = fft_regression_batch(cfg, seed)
    in_rate, out_rate = stream_rates(seed)
    full = in_rate == 1.0 and out_rate == 1.0
    result = simulate_fft(re, im, cfg, sim=sim, in_rate=in_rate, out_rate=out_rate, seed=seed,
                          build_root=build_root)
    _labelled(kinds, compare_fft, re, im, result, cfg, check_cycles=full)
    lengths = ",".join(str(n) for n in sorted({len(r) for r in re}))
    summary = (f"{len(re)} FFTs N={lengths}, rates {in_rate}/{out_rate}, "
               f"{result['total_cycles']} cycles{', cycle model exact' if full else ''}")
    if cfg.linear:
        re, im, modes, kinds, layer = mixed_regression_batch(cfg, seed)
        result = simulate(re, im, cfg, modes=modes, layer=layer, sim=sim, in_rate=in_rate,
                          out_rate=out_rate, seed=seed, build_root=build_root)
        _labelled(kinds, compare, re, im, result, cfg, modes=modes, layer=layer,
                  check_cycles=full)
        summary += (f"; {int(np.sum(modes))} butterfly-linear N={layer.n} among "
                    f"{len(modes) - int(np.sum(modes))} FFTs, {result['total_cycles']} cycles"
                    f"{', cycle model exact' if full else ''}")
    return summary


def _labelled(kinds, check, *args, what="transform", **kwargs):
    """Run a ``compare…`` check; a failure about ``<what> <index>`` gets that input's kind."""
    try:
        check(*args, **kwargs)
    except AssertionError as exc:
        message = str(exc)
        if message.startswith(f"{what} "):
            message = f"{message} [{kinds[int(message.split()[1])]}]"
        raise AssertionError(message) from None


def linear_rows(cfg, n, rng):
    """Named inputs of a butterfly layer (length ``n``): random full and half scale, extremes,
    tiny ±1, DC at the limit, zeros."""
    lo, hi = cfg.data_min, cfg.data_max
    return {"random": rng.integers(lo, hi + 1, n), "extremes": rng.choice([lo, hi, 0, -1, 1], n),
            "tiny": rng.integers(-1, 2, n), "dc_max": np.full(n, hi),
            "random_half": rng.integers(lo // 2, hi // 2 + 1, n),
            "zeros": np.zeros(n, dtype=np.int64)}


def mixed_regression_batch(cfg, seed):
    """Butterfly-linear transforms (one layer of random weights) mixed with FFTs of other
    lengths. Returns ``(re, im, modes, kinds, layer)``."""
    rng = np.random.default_rng([seed, 7, cfg.width, cfg.n_max, cfg.lanes])
    n = cfg.n_max if seed % 2 == 0 or cfg.n_max // 2 < _min_length(cfg) else cfg.n_max // 2
    xs = linear_rows(cfg, n, rng)
    layer = Layer(random_twiddle(n, rng), cfg, x=np.stack(list(xs.values())))
    items = [(f"butterfly-{kind}", x, np.zeros(n, dtype=np.int64), model.MODE_REAL)
             for kind, x in xs.items()]
    for m in sorted({_min_length(cfg), cfg.n_max // 2, cfg.n_max} - {0}):
        if m >= _min_length(cfg):
            r, i = fft_vectors(cfg, m, rng)["random"]
            items.append((f"fft-{m}", r, i, model.MODE_FFT))
    items = [items[k] for k in rng.permutation(len(items))]
    return ([it[1] for it in items], [it[2] for it in items],
            np.array([it[3] for it in items], dtype=np.int64), [it[0] for it in items], layer)



def _mismatch(check, *args, **kwargs):
    """Run a ``compare…`` check; return its message if it fails, else None (for a job's
    result, which reports a mismatch instead of raising)."""
    try:
        check(*args, **kwargs)
    except AssertionError as exc:
        return str(exc)
    return None


def _require(arrays, names, expected):
    """Raise ValueError naming the missing input arrays, what was expected and what was found."""
    missing = [name for name in names if name not in arrays]
    if missing:
        raise ValueError(f"no {' or '.join(missing)} array (expected {expected}; found "
                         f"{', '.join(arrays) or 'none'})")


def _job_result(cfg, result, mismatch, head, approx, samples, **arrays):
    """A job's :class:`~attnforge.gen.blocks.JobResult`: ``arrays`` plus ``cycles`` (unless
    given) and ``total_cycles``, and a summary line ``head, cycles, rate, approx: verdict``."""
    from ..gen.blocks import JobResult
    total = result["total_cycles"]
    verdict = f"MISMATCH: {mismatch}" if mismatch else "RTL matches the model bit for bit"
    summary = (f"{head}, {total} cycles total, {samples / total:.2f} samples/cycle (limit "
               f"{cfg.lanes} = lanes), {approx}: {verdict}")
    arrays.setdefault("cycles", np.asarray(result["cycles"], dtype=np.int64))
    arrays["total_cycles"] = np.int64(total)
    return JobResult(arrays, summary, mismatch)

# ---- attnforge run fft --------------------------------------------------------------------

class FftJob:
    """``attnforge run fft``: ``re``, ``im`` (int B×N) in; the transforms and cycles out."""

    def load(self, arrays, cfg):
        if "re" not in arrays:
            raise ValueError(f"no re array (expected re: int B×N and im: int B×N; found "
                             f"{', '.join(arrays) or 'none'})")
        re, im = arrays["re"], arrays.get("im")
        for name, values in (("re", re), ("im", im)):
            if values is not None and values.ndim != 2:
                raise ValueError(f"{name} must be 2-D (B×N), not shape {values.shape}")
        if im is not None and im.shape != re.shape:
            raise ValueError(f"re and im differ in shape: {re.shape} vs {im.shape}")
        re_list, im_list = check_fft_batch(re, im, cfg)
        return {"re": np.stack(re_list), "im": np.stack(im_list)}

    def describe(self, inputs):
        re = inputs["re"]
        return f"{len(re)} transforms of N={re.shape[1]}"

    def run(self, inputs, cfg, *, sim, build_root=None, waves=False, progress=None):
        re, im = inputs["re"], inputs["im"]
        result = simulate_fft(re, im, cfg, sim=sim, build_root=build_root, waves=waves,
                              progress=progress)
        mismatch = _mismatch(compare_fft, re, im, result, cfg, check_cycles=True)
        batch, n = re.shape
        return _job_result(cfg, result, mismatch, f"fft: {batch} transforms, N={n}",
                           f"out × 2**{n.bit_length() - 1} ≈ numpy.fft.fft", re.size,
                           re=np.asarray(result["re"], dtype=np.int64),
                           im=np.asarray(result["im"], dtype=np.int64),
                           scale_log2=result["scale_log2"])


FFT_JOB = FftJob()


# ---- attnforge run butterfly --------------------------------------------------------------

class ButterflyJob:
    """``attnforge run butterfly``: ``x`` (int B×N) and ``twiddle`` (float log2N × N/2 × 2 × 2)
    in; ``y``, ``scale_log2``, ``cycles`` out.

    The host quantizes the weights to Q2.F with one power-of-two exponent per stage
    (:func:`attnforge.sim.butterfly.quantize_weights`), picks the per-stage shifts as block
    floating point over the batch (:func:`attnforge.sim.butterfly.butterfly_batch_shifts`),
    writes them through the array's weight stream, then streams the rows.
    """

    def load(self, arrays, cfg):
        _require(arrays, ("x", "twiddle"), "x: int B×N, twiddle: float log2N×N/2×2×2")
        x, twiddle = check_butterfly_inputs(arrays["x"], arrays["twiddle"], cfg)
        return {"x": x, "twiddle": twiddle}

    def describe(self, inputs):
        x = inputs["x"]
        return f"{len(x)} rows of N={x.shape[1]}"

    def run(self, inputs, cfg, *, sim, build_root=None, waves=False, progress=None):
        x, twiddle = inputs["x"], inputs["twiddle"]
        layer = Layer(twiddle, cfg, x=x)
        modes = np.full(len(x), model.MODE_REAL)
        result = simulate_butterfly(x, layer, cfg, sim=sim, build_root=build_root, waves=waves,
                                    progress=progress)
        mismatch = _mismatch(compare, x, None, result, cfg, modes=modes, layer=layer)
        batch, n = x.shape
        return _job_result(cfg, result, mismatch,
                           f"butterfly: {batch} rows, N={n}, stage shifts {layer.shifts}",
                           f"y × 2**{layer.scale_log2} ≈ x @ B.T", x.size,
                           y=np.asarray(result["y"], dtype=np.int64),
                           scale_log2=result["scale_log2"])


BUTTERFLY_JOB = ButterflyJob()


# ---- FNet: two arrays and a transpose (rtl/butterfly/fnet.py) ---------------------------------

def check_fnet_frames(frames, cfg):
    """Validate FNet frames (each an int L×D array); return them as int64 arrays."""
    if isinstance(frames, np.ndarray):
        frames = [frames] if frames.ndim == 2 else list(frames)
    if not len(frames):
        raise ValueError("no frames: x is empty")
    out = []
    for index, frame in enumerate(frames):
        frame = np.asarray(frame)
        if frame.ndim != 2:
            raise ValueError(f"frame {index}: x must be 2-D (L×D), not shape {frame.shape}")
        if not np.issubdtype(frame.dtype, np.integer):
            raise ValueError(f"x values must be integers, not {frame.dtype}")
        for name, n in zip("LD", frame.shape):
            if n < cfg.lanes or n > cfg.n_max or n & (n - 1):
                raise ValueError(f"frame {index}: {name}={n} is out of range: expected a power "
                                 f"of two in [lanes={cfg.lanes}, n_max={cfg.n_max}]")
        if frame.size > cfg.frame_max:
            raise ValueError(f"frame {index}: L×D={frame.size} exceeds frame_max={cfg.frame_max}")
        if frame.min() < cfg.data_min or frame.max() > cfg.data_max:
            bad = int(frame.min() if frame.min() < cfg.data_min else frame.max())
            raise ValueError(f"frame {index}: x value {bad} is out of range for width="
                             f"{cfg.width}: expected [{cfg.data_min}, {cfg.data_max}]")
        out.append(frame.astype(np.int64))
    return out


def simulate_fnet(frames, cfg=ButterflyConfig(), *, sim="verilator", in_rate=1.0, out_rate=1.0,
                  seed=0, build_root=None, waves=False, progress=None):
    """Stream FNet frames back to back through the generated block.

    Returns a dict: ``y`` (list of L×D int64, reassembled from the column-major output),
    ``scale_log2`` (per frame: ``log2 L + log2 D``), ``cycles`` (first input beat to last
    output beat of each frame), ``total_cycles``, ``error``.
    """
    from ..gen.blocks import generate
    from .runner import run_job

    frames = check_fnet_frames(frames, cfg)
    shapes = np.array([f.shape for f in frames], dtype=np.int64)
    sv, manifest = generate("fnet", cfg, build_root=build_root, platform=CHECKED)
    job = {"x": np.concatenate([f.ravel() for f in frames]), "shapes": shapes,
           "in_rate": in_rate, "out_rate": out_rate, "seed": seed}
    result = run_job(sv, "fnet", "attnforge.tb.butterfly", job, testcase="fnet_job", sim=sim,
                     manifest=manifest, build_root=build_root, waves=waves, progress=progress)
    first_in, last_out = _handshake_times(result, shapes[:, 0] * shapes[:, 1] // cfg.lanes,
                                          "frame")
    ys, at = [], 0
    for l, d in shapes:
        ys.append(result["y"][at:at + l * d].reshape(d, l).T.copy())
        at += l * d
    return {"y": ys, "scale_log2": np.array([int(l).bit_length() + int(d).bit_length() - 2
                                             for l, d in shapes], dtype=np.int64),
            "cycles": last_out - first_in + 1, "total_cycles": int(last_out[-1] - first_in[0] + 1),
            "first_in": first_in, "last_out": last_out, "error": int(result["error"])}


def compare_fnet(frames, result, cfg=ButterflyConfig()):
    """Check a :func:`simulate_fnet` result against sim/butterfly.fnet bit for bit."""
    frames = check_fnet_frames(frames, cfg)
    if result["error"]:
        raise AssertionError("the FNet block raised its error flag on valid input")
    for index, frame in enumerate(frames):
        want, scale = model.fnet(frame, cfg)
        got = np.asarray(result["y"][index])
        bad = np.argwhere(got != want)
        if len(bad):
            show = [tuple(b) for b in bad[:4].tolist()]
            raise AssertionError(
                f"frame {index} (L×D={frame.shape[0]}×{frame.shape[1]}): {len(bad)} outputs "
                f"differ from the model, first at {show}: rtl {[int(got[b]) for b in show]}, "
                f"model {[int(want[b]) for b in show]}")
        if int(result["scale_log2"][index]) != int(scale):
            raise AssertionError(f"frame {index}: scale_log2 {result['scale_log2'][index]} != "
                                 f"model {int(scale)}")


def fnet_regression_frames(cfg, seed):
    """Frames of several shapes (L, D ∈ lanes … n_max, L·D ≤ frame_max): random full scale,
    extremes, tiny, and MiniLM hidden states. Returns ``(frames, kinds)``."""
    rng = np.random.default_rng([seed, 11, cfg.width, cfg.n_max, cfg.lanes])
    sizes = [1 << k for k in range(cfg.lanes.bit_length() - 1, cfg.stages_max + 1)]
    shapes = [(l, d) for l in sizes for d in sizes if l * d <= cfg.frame_max]
    big = max(shapes, key=lambda s: (s[0] * s[1], s[0]))
    picks = [big, shapes[0], shapes[int(rng.integers(len(shapes)))], big]
    lo, hi = cfg.data_min, cfg.data_max
    frames, kinds = [], []
    for (l, d), kind in zip(picks, ("random", "extremes", "tiny", "minilm")):
        if kind == "random":
            frame = rng.integers(lo, hi + 1, (l, d))
        elif kind == "extremes":
            frame = rng.choice([lo, hi, 0, -1, 1], (l, d))
        elif kind == "tiny":
            frame = rng.integers(-1, 2, (l, d))
        else:
            frame = minilm_fft_rows(cfg, d, l, layer=2)
        frames.append(frame)
        kinds.append(f"{kind} {l}×{d}")
    return frames, kinds


class FnetBench:
    """``attnforge verify fnet``: the FNet block's regression."""

    def regression(self, cfg, seed, *, sim, build_root=None):
        from .vectors import stream_rates
        frames, kinds = fnet_regression_frames(cfg, seed)
        in_rate, out_rate = stream_rates(seed)
        result = simulate_fnet(frames, cfg, sim=sim, in_rate=in_rate, out_rate=out_rate,
                               seed=seed, build_root=build_root)
        _labelled(kinds, compare_fnet, frames, result, cfg, what="frame")
        return (f"{len(frames)} frames ({', '.join(kinds)}), rates {in_rate}/{out_rate}, "
                f"{result['total_cycles']} cycles")


FNET_BENCH = FnetBench()


class FnetJob:
    """``attnforge run fnet``: ``x`` (int L×D, or B×L×D) in; ``y``, ``scale_log2``, ``cycles`` out."""

    def load(self, arrays, cfg):
        if "x" not in arrays:
            raise ValueError(f"no x array (expected x: int L×D or B×L×D; found "
                             f"{', '.join(arrays) or 'none'})")
        x = arrays["x"]
        if x.ndim not in (2, 3):
            raise ValueError(f"x must be L×D or B×L×D, not shape {x.shape}")
        frames = check_fnet_frames(x if x.ndim == 3 else x[None], cfg)
        return {"x": np.stack(frames), "batched": x.ndim == 3}

    def describe(self, inputs):
        b, l, d = inputs["x"].shape
        return f"{b} frame{'s' if b > 1 else ''} of L×D={l}×{d}"

    def run(self, inputs, cfg, *, sim, build_root=None, waves=False, progress=None):
        x = inputs["x"]
        result = simulate_fnet(list(x), cfg, sim=sim, build_root=build_root, waves=waves,
                               progress=progress)
        mismatch = _mismatch(compare_fnet, list(x), result, cfg)
        b, l, d = x.shape
        y = np.stack(result["y"]).astype(np.int64)
        scale = result["scale_log2"]
        cycles = np.asarray(result["cycles"], dtype=np.int64)
        if not inputs["batched"]:
            y, scale, cycles = y[0], scale[0], cycles[0]
        return _job_result(cfg, result, mismatch, f"fnet: {b} frames of L×D={l}×{d}",
                           f"y × 2**{int(result['scale_log2'][0])} ≈ Re(fft2(x))", x.size,
                           y=y, scale_log2=np.int64(scale) if np.ndim(scale) == 0 else scale,
                           cycles=cycles)


FNET_JOB = FnetJob()


# ---- the butterfly FFN: two arrays chained column to column (rtl/butterfly/ffn.py) -----------

def simulate_bffn(x, ffn, cfg=ButterflyConfig(), *, sim="verilator", in_rate=1.0, out_rate=1.0,
                  seed=0, build_root=None, waves=False, progress=None):
    """Write ``ffn``'s weights (an :class:`FFN`), then stream the rows of ``x`` (int B×N).

    Returns a dict: ``y`` (B×N int64), ``scale_log2`` (B), ``cycles`` (first input beat to
    last output beat of each row, inclusive), ``total_cycles``, ``first_in``, ``last_out``,
    ``error``.
    """
    from ..gen.blocks import generate
    from .runner import run_job

    x = np.asarray(x, dtype=np.int64)
    batch, n = x.shape
    if n != ffn.n:
        raise ValueError(f"x has rows of N={n} but the FFN's weights are for N={ffn.n}")
    sv, manifest = generate("bffn", cfg, build_root=build_root, platform=CHECKED)
    job = {"x": x.ravel(), "n": n, "in_rate": in_rate, "out_rate": out_rate, "seed": seed,
           **ffn.writes}
    result = run_job(sv, "bffn", "attnforge.tb.butterfly", job, testcase="bffn_job", sim=sim,
                     manifest=manifest, build_root=build_root, waves=waves, progress=progress)
    first_in, last_out = _handshake_times(result, np.full(batch, n // cfg.lanes), "row")
    return {"y": result["y"].reshape(batch, n), "scale_log2": np.full(batch, ffn.scale_log2),
            "cycles": last_out - first_in + 1, "total_cycles": int(last_out[-1] - first_in[0] + 1),
            "first_in": first_in, "last_out": last_out, "error": int(result["error"])}


def compare_bffn(x, result, ffn, cfg=ButterflyConfig(), *, check_cycles=False):
    """Check a :func:`simulate_bffn` result against sim/butterfly.ffn bit for bit; with
    ``check_cycles`` (full-rate runs) also against :func:`attnforge.sim.butterfly.ffn_cycles`."""
    if result["error"]:
        raise AssertionError("the FFN raised its error flag on valid input")
    want, scale = ffn.model(np.asarray(x), cfg)
    got = np.asarray(result["y"])
    for index in range(len(want)):
        bad = np.flatnonzero(got[index] != want[index])
        if bad.size:
            show = bad[:4]
            raise AssertionError(
                f"row {index} (N={want.shape[1]}): {bad.size} outputs differ from the model, "
                f"first {bad[:8].tolist()}: rtl {got[index][show].tolist()}, model "
                f"{want[index][show].tolist()}")
    if not np.array_equal(result["scale_log2"], scale):
        raise AssertionError(f"scale_log2 {result['scale_log2'].tolist()} != model "
                             f"{np.asarray(scale).tolist()}")
    if check_cycles:
        _check_timing(result, model.ffn_cycles(len(want), want.shape[1], cfg), "row")


def ffn_regression_rows(cfg, seed):
    """One seed's FFN rows: the kinds of :func:`linear_rows` and two MiniLM hidden states,
    ``N = n_max`` on even seeds and ``n_max/2`` on odd ones; weights Gaussian. Returns
    ``(x, kinds, ffn)``."""
    rng = np.random.default_rng([seed, 13, cfg.width, cfg.n_max, cfg.lanes])
    n = cfg.n_max if seed % 2 == 0 or cfg.n_max // 2 < _min_length(cfg) else cfg.n_max // 2
    rows = linear_rows(cfg, n, rng)
    rows.update({f"minilm{k}": row for k, row in enumerate(minilm_fft_rows(cfg, n, 2, layer=2))})
    kinds = list(rows)
    order = rng.permutation(len(kinds))
    x = np.stack([rows[kinds[k]] for k in order])
    ffn = FFN(random_twiddle(n, rng), random_twiddle(n, rng), cfg, x=x)
    return x, [kinds[k] for k in order], ffn


class FfnBench:
    """``attnforge verify bffn``: the butterfly FFN's regression."""

    def regression(self, cfg, seed, *, sim, build_root=None):
        from .vectors import stream_rates
        x, kinds, ffn = ffn_regression_rows(cfg, seed)
        in_rate, out_rate = stream_rates(seed)
        full = in_rate == 1.0 and out_rate == 1.0
        result = simulate_bffn(x, ffn, cfg, sim=sim, in_rate=in_rate, out_rate=out_rate,
                               seed=seed, build_root=build_root)
        _labelled(kinds, compare_bffn, x, result, ffn, cfg, what="row", check_cycles=full)
        return (f"{len(x)} rows of N={x.shape[1]} ({', '.join(kinds)}), shifts "
                f"{[layer.shifts for layer in ffn.layers]}, rates {in_rate}/{out_rate}, "
                f"{result['total_cycles']} cycles{', cycle model exact' if full else ''}")


FFN_BENCH = FfnBench()


class BffnJob:
    """``attnforge run bffn``: ``x`` (int B×N), ``twiddle1`` and ``twiddle2`` (float log2N ×
    N/2 × 2 × 2) in; ``y``, ``scale_log2``, ``cycles``, ``total_cycles`` out.

    The host quantizes each layer's weights (one exponent per stage), calibrates both layers'
    stage shifts on the batch (:func:`attnforge.sim.butterfly.ffn_batch_shifts`: layer 2 on
    the ReLU of layer 1's output), writes both through the block's weight stream, then
    streams the rows.
    """

    def load(self, arrays, cfg):
        _require(arrays, ("x", "twiddle1", "twiddle2"),
                 "x: int B×N, twiddle1 and twiddle2: float log2N×N/2×2×2")
        x, twiddle1 = check_butterfly_inputs(arrays["x"], arrays["twiddle1"], cfg)
        try:
            _, twiddle2 = check_butterfly_inputs(x, arrays["twiddle2"], cfg)
        except ValueError as exc:
            raise ValueError(f"twiddle2: {exc}") from None
        return {"x": x, "twiddle1": twiddle1, "twiddle2": twiddle2}

    def describe(self, inputs):
        x = inputs["x"]
        return f"{len(x)} rows of N={x.shape[1]}"

    def run(self, inputs, cfg, *, sim, build_root=None, waves=False, progress=None):
        x = inputs["x"]
        ffn = FFN(inputs["twiddle1"], inputs["twiddle2"], cfg, x=x)
        result = simulate_bffn(x, ffn, cfg, sim=sim, build_root=build_root, waves=waves,
                               progress=progress)
        mismatch = _mismatch(compare_bffn, x, result, ffn, cfg, check_cycles=True)
        batch, n = x.shape
        shifts = [layer.shifts for layer in ffn.layers]
        return _job_result(cfg, result, mismatch,
                           f"bffn: {batch} rows, N={n}, stage shifts {shifts}",
                           f"y × 2**{ffn.scale_log2} ≈ relu(x @ B1.T) @ B2.T", x.size,
                           y=result["y"], scale_log2=result["scale_log2"])


BFFN_JOB = BffnJob()
