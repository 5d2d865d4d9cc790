"""Testbench of the top-k engine: the cocotb test, and the host side that runs it.

The cocotb test streams the job's vectors through the generated module with random
valid gaps and ready backpressure and records every output beat with its cycle. The host
side (:func:`simulate`) turns that into masks and cycle counts; :func:`verify` checks them
bit for bit against sim/topk.py.
"""

import re

import cocotb
import numpy as np

from ..configs.topk import TopKConfig
from ..sim import topk as model
from ..rtl.ram import CHECKED
from .harness import start
from .streams import StreamSink, StreamSource

__all__ = ["simulate", "compare", "regression", "TOPK_JOB"]


@cocotb.test()
async def topk_job(dut):
    bench = await start(dut)
    flat, lengths, k = bench.job["scores"], bench.job["lengths"], bench.job["k"]
    scores = np.split(flat, np.cumsum(lengths)[:-1])
    lanes = int(bench.manifest["parameters"]["lanes"])
    beats = []
    for vector, vector_k in zip(scores, k):
        n_beats = len(vector) // lanes
        for beat in range(n_beats):
            beats.append({"scores": vector[beat * lanes:(beat + 1) * lanes].tolist(),
                          "k": int(vector_k), "last": int(beat == n_beats - 1)})
    source = StreamSource(dut, "i", dut.clk, bench.counter, bench.payload("i"),
                          rate=bench.rate("in_rate"), rng=bench.rng)
    sink = StreamSink(dut, "o", dut.clk, bench.counter, bench.payload("o"),
                      rate=bench.rate("out_rate"), rng=bench.rng)
    cocotb.start_soon(source.send(beats))
    ends = len(scores)
    await sink.recv(lambda got: sum(beat["last"] for beat in got) >= ends)
    out = sink.beats
    bench.save(
        in_cycles=np.array(source.accepted, dtype=np.int64),
        out_cycles=np.array(sink.cycles, dtype=np.int64),
        values=np.array([beat["values"] for beat in out], dtype=np.int64).reshape(len(out), -1),
        indices=np.array([beat["indices"] for beat in out], dtype=np.int64).reshape(len(out), -1),
        count=np.array([beat["count"] for beat in out], dtype=np.int64),
        last=np.array([beat["last"] for beat in out], dtype=np.int64),
    )


def simulate(scores, k, cfg=TopKConfig(), *, sim="verilator", in_rate=1.0, out_rate=1.0,
             seed=0, build_root=None, waves=False, progress=None):
    """Stream vectors back to back through the generated engine; return masks, outputs, cycles.

    ``scores`` is a B×N array or a list of B vectors of any lengths (each a multiple of
    ``lanes``, at most ``n_max``); ``k`` has B entries. Returns a dict: ``mask`` (B×N bool,
    or a list of masks for vectors of several lengths), ``values``/``indices`` (lists of
    arrays, in output order), ``cycles`` (B: first input beat accepted to last output beat,
    inclusive), ``total_cycles``, ``first_in`` and ``last_out`` (B, cycle numbers).
    """
    from ..gen.blocks import generate
    from .runner import run_job

    vectors = [np.asarray(row, dtype=np.int64) for row in scores]
    k = np.asarray(k, dtype=np.int64)
    model.check_batch(vectors, k, cfg)
    lengths = np.array([len(row) for row in vectors], dtype=np.int64)
    sv, manifest = generate("topk", cfg, build_root=build_root, platform=CHECKED)
    job = {"scores": np.concatenate(vectors), "lengths": lengths, "k": k,
           "in_rate": in_rate, "out_rate": out_rate, "seed": seed}
    result = run_job(sv, "topk", "attnforge.tb.topk", job, sim=sim, manifest=manifest,
                     build_root=build_root, waves=waves, progress=progress)
    batch = len(vectors)
    first_beats = np.concatenate([[0], np.cumsum(lengths // cfg.lanes)[:-1]])
    first_in = result["in_cycles"][first_beats]
    ends = np.flatnonzero(result["last"])
    if len(ends) != batch:
        raise AssertionError(f"expected {batch} vectors out, saw {len(ends)} last beats")
    last_out = result["out_cycles"][ends]
    masks, values, indices = [np.zeros(len(row), dtype=bool) for row in vectors], [], []
    start_beat = 0
    for vector, end in enumerate(ends):
        n = lengths[vector]
        span = slice(start_beat, end + 1)
        valid = np.arange(cfg.lanes)[None, :] < result["count"][span][:, None]
        got_idx = result["indices"][span][valid]
        got_val = result["values"][span][valid]
        if np.any(got_idx >= n):
            raise AssertionError(f"vector {vector}: index {got_idx.max()} out of range N={n}")
        masks[vector][got_idx] = True
        values.append(got_val)
        indices.append(got_idx)
        start_beat = end + 1
    if len(set(lengths.tolist())) == 1:
        masks = np.stack(masks)
    return {"mask": masks, "values": values, "indices": indices,
            "cycles": last_out - first_in + 1, "total_cycles": int(last_out[-1] - first_in[0] + 1),
            "first_in": first_in, "last_out": last_out}


def compare(scores, k, result, cfg=TopKConfig()):
    """Check a :func:`simulate` result against sim/topk.py, bit for bit; raise AssertionError."""
    for vector, (row, row_k) in enumerate(zip(scores, np.asarray(k))):
        row = np.asarray(row)
        expected = model.select(row, row_k, cfg)
        want_idx = expected.indices
        got_idx = result["indices"][vector]
        if not np.array_equal(got_idx, want_idx):
            missing = np.setdiff1d(want_idx, got_idx)[:8]
            extra = np.setdiff1d(got_idx, want_idx)[:8]
            raise AssertionError(
                f"vector {vector} (N={len(row)}, k={row_k}): indices differ from the model "
                f"(got {len(got_idx)}, want {len(want_idx)}; missing {missing.tolist()}, "
                f"extra {extra.tolist()}, threshold {expected.threshold})")
        if not np.array_equal(result["values"][vector], row[want_idx]):
            raise AssertionError(f"vector {vector}: values differ from the scores at their indices")


def regression(cfg, seed, *, sim, build_root=None):
    """One seed of the regression (mixed N and k, adversarial and random, random rates)."""
    from .vectors import regression_batch, stream_rates
    batch = regression_batch(cfg, seed)
    in_rate, out_rate = stream_rates(seed)
    lengths = ",".join(str(n) for n in sorted(set(batch.lengths.tolist())))
    result = simulate(batch.scores, batch.k, cfg, sim=sim, in_rate=in_rate, out_rate=out_rate,
                      seed=seed, build_root=build_root)
    try:
        compare(batch.scores, batch.k, result, cfg)
    except AssertionError as exc:
        message = str(exc)
        found = re.match(r"vector (\d+)", message)
        if found and int(found.group(1)) < len(batch):
            message = f"{message} [{batch.kinds[int(found.group(1))]}]"
        raise AssertionError(message) from None
    return (f"{len(batch)} vectors N={lengths}, rates {in_rate}/{out_rate}, "
            f"{result['total_cycles']} cycles")


class TopKJob:
    """``attnforge run topk``: score rows in, masks and cycle counts out."""

    def load(self, arrays, cfg):
        missing = [name for name in ("scores", "k") if name not in arrays]
        if missing:
            raise ValueError(f"no {' or '.join(missing)} array (expected scores: int B×N, "
                             f"k: int B; found {', '.join(arrays) or 'none'})")
        scores, k = arrays["scores"], arrays["k"]
        if k.ndim == 0 and scores.ndim == 2:
            k = np.full(scores.shape[0], k)
        model.check_inputs(scores, k, cfg)
        return {"scores": scores.astype(np.int64), "k": k.astype(np.int64)}

    def describe(self, inputs):
        scores = inputs["scores"]
        return f"{len(scores)} vectors of N={scores.shape[1]}"

    def run(self, inputs, cfg, *, sim, build_root=None, waves=False, progress=None):
        from ..gen.blocks import JobResult
        scores, k = inputs["scores"], inputs["k"]
        result = simulate(scores, k, cfg, sim=sim, build_root=build_root, waves=waves,
                          progress=progress)
        mismatch = None
        try:
            compare(scores, k, result, cfg)
        except AssertionError as exc:
            mismatch = str(exc)
        batch, n = scores.shape
        check = f"MISMATCH: {mismatch}" if mismatch else "RTL matches the model bit for bit"
        summary = (f"topk: {batch} vectors, N={n}, {result['total_cycles']} cycles total, "
                   f"{batch * n / result['total_cycles']:.2f} elements/cycle "
                   f"(limit {cfg.lanes} = lanes): {check}")
        arrays = {"mask": np.asarray(result["mask"], dtype=bool),
                  "cycles": np.asarray(result["cycles"], dtype=np.int64),
                  "total_cycles": np.int64(result["total_cycles"])}
        return JobResult(arrays, summary, mismatch)


TOPK_JOB = TopKJob()
