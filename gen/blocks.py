"""The registry of generated blocks and of the jobs that run on them.

A :class:`Block` is a hardware module with its Config: what ``attnforge verilog``, ``verify``,
``fpga`` and ``bench`` take. A :class:`Job` is a kind of data ``attnforge run`` streams
through a block (one block may serve several: the butterfly array runs ``fft``,
``butterfly`` and ``fnet``). Both name their code by import path, so listing them here costs
no import of Amaranth, cocotb or the models.

A job's host object (``Job.host``) has:

* ``load(arrays, cfg)``: validate the input arrays (a dict of numpy arrays), return the
  job's inputs; raise ``ValueError`` with a message naming the array and the problem;
* ``run(inputs, cfg, *, sim, build_root, waves, progress)``: simulate, and return a
  :class:`JobResult`.

A block's testbench module (``Block.testbench``) has ``regression(cfg, seed, *, sim,
build_root)``, which simulates one seed of the block's regression and returns a one-line
description, raising ``AssertionError`` on any disagreement with the model.
"""

import dataclasses
import hashlib
import importlib
import json
from pathlib import Path

from .verilog import write_block

__all__ = ["Block", "Job", "JobResult", "BLOCKS", "JOBS", "generate", "load_object"]


def load_object(path):
    """Import ``"package.module:attribute"`` (or a bare module path) and return it."""
    module, _, attribute = path.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attribute) if attribute else loaded


@dataclasses.dataclass(frozen=True)
class Block:
    """A generated module: its Config class, its Amaranth component and its testbench."""
    name: str
    config_path: str
    rtl_path: str
    testbench_path: str
    summary: str
    bench_path: str | None = None   #: ``bench(cfg, args)`` of ``attnforge bench``

    @property
    def config(self):
        return load_object(self.config_path)

    def component(self, cfg):
        return load_object(self.rtl_path)(cfg)

    @property
    def testbench(self):
        return load_object(self.testbench_path)

    def check(self, cfg):
        """The component's own checks beyond its Config's (``check_config``), if it has any."""
        check = getattr(load_object(self.rtl_path), "check_config", None)
        if check is not None:
            check(cfg)


@dataclasses.dataclass(frozen=True)
class Job:
    """An ``attnforge run`` target: the block it runs on and its host-side code."""
    name: str
    block: str
    host_path: str
    summary: str
    inputs: str     #: the input .npz's arrays, for --help
    outputs: str    #: the output .npz's arrays

    @property
    def host(self):
        return load_object(self.host_path)


@dataclasses.dataclass
class JobResult:
    """What a job's ``run`` returns: the output arrays, a summary line, any model mismatch."""
    arrays: dict
    summary: str
    mismatch: str | None = None


BLOCKS = {block.name: block for block in [
    Block("topk", "attnforge.configs.topk:TopKConfig", "attnforge.rtl.topk:TopK",
          "attnforge.tb.topk", "SpAtten's top-k engine, pipelined and bounded",
          bench_path="attnforge.gen.bench:topk_main"),
    Block("butterfly", "attnforge.configs.butterfly:ButterflyConfig",
          "attnforge.rtl.butterfly.array:ButterflyArray", "attnforge.tb.butterfly",
          "streaming array of butterfly PEs: FFT and butterfly linear layers (lanes samples/cycle, "
          "run-time N and mode)",
          bench_path="attnforge.gen.bench_butterfly:main"),
    Block("qk", "attnforge.configs.qk:QKConfig", "attnforge.rtl.qk_block:QKBlock", "attnforge.tb.qk",
          "SpAtten's Q/K front end: AXI4 key-plane fetcher, Key buffer, Q×K lanes, softmax, "
          "progressive quantization",
          bench_path="attnforge.gen.bench_qk:main"),
    Block("fnet", "attnforge.configs.butterfly:ButterflyConfig", "attnforge.rtl.butterfly.fnet:FNet",
          "attnforge.tb.butterfly:FNET_BENCH",
          "FNet mixing Re(FFT_L(FFT_D(x))): two FFT arrays chained through an on-chip transpose"),
    Block("bffn", "attnforge.configs.butterfly:ButterflyConfig",
          "attnforge.rtl.butterfly.ffn:ButterflyFFN", "attnforge.tb.butterfly:FFN_BENCH",
          "butterfly FFN: two butterfly-linear arrays chained column to column, ReLU between"),
]}

JOBS = {job.name: job for job in [
    Job("topk", "topk", "attnforge.tb.topk:TOPK_JOB", "select the top k of each score row",
        inputs="scores (int B×N) and k (int B, or one int)",
        outputs="mask (bool B×N), cycles (int64 B), total_cycles"),
    Job("qk", "qk", "attnforge.tb.qk:QK_JOB",
        "attention probabilities of each query, fetching LSBs only for unconfident rows",
        inputs="q (int B×D, 12-bit), keys (int N×D, msb_bits+lsb_bits signed), scale (float: one "
               "unit of q·k, 1/√D included); optional alive (bool N), mode ('summarization' or "
               "'generation'), threshold (float, default 0.1)",
        outputs="probs (int64 B×N), prob_frac_bits, refetched (bool B), dram_bytes (int64 B), "
                "cycles (int64 B), total_cycles"),
    Job("fft", "butterfly", "attnforge.tb.butterfly:FFT_JOB", "FFT of each row (natural order)",
        inputs="re and im (int B×N; im optional)",
        outputs="re, im (int64 B×N, natural order), scale_log2 (int64 B: out × 2**scale_log2 "
                "≈ numpy.fft.fft), cycles (int64 B), total_cycles"),
    Job("butterfly", "butterfly", "attnforge.tb.butterfly:BUTTERFLY_JOB",
        "a butterfly linear layer (learned weights) on each row",
        inputs="x (int B×N) and twiddle (float log2N×N/2×2×2, stage s with stride 2**s)",
        outputs="y (int64 B×N), scale_log2 (int64 B: y × 2**scale_log2 ≈ x @ B.T), "
                "cycles (int64 B), total_cycles"),
    Job("fnet", "fnet", "attnforge.tb.butterfly:FNET_JOB", "FNet token mixing of each frame",
        inputs="x (int L×D, or B×L×D)",
        outputs="y (int64 L×D: y × 2**scale_log2 ≈ Re(FFT_L(FFT_D(x)))), scale_log2, cycles, "
                "total_cycles"),
    Job("bffn", "bffn", "attnforge.tb.butterfly:BFFN_JOB",
        "a butterfly FFN (layer, ReLU, layer; learned weights) on each row",
        inputs="x (int B×N), twiddle1 and twiddle2 (float log2N×N/2×2×2, stage s with stride 2**s)",
        outputs="y (int64 B×N), scale_log2 (int64 B: y × 2**scale_log2 ≈ relu(x @ B1.T) @ B2.T), "
                "cycles (int64 B), total_cycles"),
]}


def _source_digest():
    """A digest of the code generation depends on, so a cached module never outlives its source."""
    import amaranth
    digest = hashlib.sha1(amaranth.__version__.encode())
    here = Path(__file__).resolve().parent
    for path in sorted([*(here.parent / "rtl").rglob("*.py"), *(here.parent / "attnforge").rglob("*.py"),
                        here / "verilog.py", Path(__file__).resolve()]):
        digest.update(path.read_bytes())
    return digest.digest()


def generate(name, cfg, build_root=None, out_dir=None, platform=None):
    """Write ``<name>.sv`` and its manifest (cached by configuration and platform); return both
    paths. ``platform``: see :func:`~attnforge.gen.verilog.write_block`."""
    block = BLOCKS[name]
    if out_dir is None:
        target = type(platform).__qualname__ if platform is not None else ""
        key = hashlib.sha1(json.dumps([cfg.as_dict(), target], sort_keys=True).encode()
                           + _source_digest()).hexdigest()[:12]
        out_dir = Path(build_root or "build") / "gen" / f"{name}-{key}"
        sv, manifest = out_dir / f"{name}.sv", out_dir / f"{name}.json"
        if sv.exists() and manifest.exists():
            return sv, manifest
    return write_block(block.component(cfg), name, out_dir, cfg.as_dict(), cfg.manifest_notes(),
                       platform=platform)
