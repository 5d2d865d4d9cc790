"""``attnforge bench``: measured cycles and resources against the physical limits and the papers.

Every cycle count printed here comes from simulating the generated Verilog (Verilator by
default) and is cross-checked against the cycle model of sim/; the FPGA figures come from
nextpnr's report. The printed markdown is what BENCHMARKS.md records.
"""

import dataclasses
import re
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["run_bench", "topk_bench", "topk_main", "replace_section", "fpga_table", "log"]

#: Select-stage cycles of SpAtten's engine at 16 comparators (REFERENCE.md, derived from
#: [R]'s latency model, 400 random trials): (N, k) -> cycles.
PAPER_SELECT = {(128, 64): 55, (512, 64): 123, (1024, 16): 167, (1024, 128): 220,
                (1024, 512): 253, (2048, 64): 333}
PAPER_END_TO_END_1024 = "≈ 410–480 cycles (N = 1024, k = 128, 8 scores/cycle in)"
PAPER_WORST_1024 = 36_000


def log(message):
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _topk_data(cfg, n, kind, count, rng):
    """``count`` vectors of length ``n`` of one kind (random, adversarial or real MiniLM)."""
    from ..sim import minilm
    from ..tb.vectors import adversarial_vectors
    lo, hi = -(1 << (cfg.width - 1)), (1 << (cfg.width - 1)) - 1
    if kind == "random":
        return [rng.integers(lo, hi + 1, n) for _ in range(count)]
    if kind == "minilm":
        passage = 0 if n <= 256 else minilm.LONG_PASSAGE
        rows = minilm.score_rows(cfg.width, n=n, layer=2, passage=passage, seed=int(rng.integers(1 << 30)))
        return list(rows[:count])
    return [adversarial_vectors(cfg, n, rng)[kind] for _ in range(count)]


def topk_bench(cfg, *, sim="verilator", lengths=(128, 512, 1024, 2048), vectors=8,
               kinds=("random", "minilm", "sorted", "all_equal", "two_values", "adjacent_pair"), build_root=None):
    """Cycles of the engine over N, k and data kinds; returns rows of measurements."""
    from ..sim import topk as model
    from ..tb.topk import compare, simulate

    rows = []
    rng = np.random.default_rng(2021)
    for n in lengths:
        run_cfg = dataclasses.replace(cfg, n_max=max(cfg.n_max, n))
        for kind in kinds:
            if kind == "minilm" and n > 512:
                continue        # MiniLM attends over at most 512 tokens
            for k in (n // 16, n // 4, n // 2):
                data = _topk_data(run_cfg, n, kind, vectors, rng)
                ks = [k] * len(data)
                started = time.monotonic()
                result = simulate(data, ks, run_cfg, sim=sim, build_root=build_root)
                compare(data, ks, result, run_cfg)
                timing = model.cycles(data, ks, run_cfg)
                exact = bool(np.array_equal(result["cycles"], timing.latency)
                             and result["total_cycles"] == timing.total)
                span = int(result["first_in"][-1] - result["first_in"][0])
                sustained = n * (len(data) - 1) / span
                selections = [model.select(v, k, run_cfg) for v in data]
                select = float(np.mean([model.select_stage_cycles(s, run_cfg) for s in selections]))
                paper = float(np.mean([model.paper_select_cycles(v, k, 16, rng=i) for i, v in enumerate(data)]))
                rows.append({
                    "n": n, "k": k, "kind": kind, "n_max": run_cfg.n_max,
                    "latency": int(result["cycles"][0]), "limit": n // cfg.lanes,
                    "sustained": sustained, "select": select, "paper_select": paper,
                    "worst_select": model.worst_case_select_cycles(n, run_cfg),
                    "model_exact": exact,
                })
                log(f"N={n:5d} k={k:5d} {kind:11s} latency {rows[-1]['latency']:5d} "
                     f"({rows[-1]['latency'] / rows[-1]['limit']:.2f}× N/lanes), "
                     f"sustained {sustained:.2f}/cycle, model {'exact' if exact else 'DIFFERS'} "
                     f"[{time.monotonic() - started:.1f} s]")
    return rows


def _topk_markdown(cfg, rows, fpga_reports, command):
    lanes = cfg.lanes
    out = [f"Command: `{command}`", "",
           f"Configuration: width={cfg.width}, lanes={lanes}, comparators={cfg.comparators}, "
           f"radix_bits={cfg.radix_bits}; n_max = max({cfg.n_max}, N). Cycles are measured on the "
           f"generated Verilog (Verilator), {rows and 'every run checked bit-exact against sim/topk.py'}; "
           "`model` says whether sim/topk.py's cycle model predicted every cycle count exactly.", "",
           "Latency: one vector alone, first score in to last selection out. Sustained: "
           "scores accepted per cycle over a stream of 8 vectors back to back (the input-rate "
           f"limit is lanes = {lanes}/cycle). Select: the select stage's cycles (ours, measured "
           "through the model the RTL matched), against SpAtten's random-pivot quick-select at 16 "
           "comparators ([R]'s latency model, same vectors) and our worst-case bound.", "",
           "| N | k | data | latency | × N/lanes | sustained /cycle | × lanes | select | paper select | worst bound | model |",
           "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        out.append(f"| {r['n']} | {r['k']} | {r['kind']} | {r['latency']} | {r['latency'] / r['limit']:.2f} | "
                   f"{r['sustained']:.2f} | {r['sustained'] / lanes:.2f} | {r['select']:.0f} | "
                   f"{r['paper_select']:.0f} | {r['worst_select']} | {'exact' if r['model_exact'] else 'differs'} |")
    out += ["", "The paper's figures (REFERENCE.md, derived from [R]): select rounds at 16 comparators "
            + ", ".join(f"{c} cycles (N={n}, k={k})" for (n, k), c in PAPER_SELECT.items())
            + f"; end to end {PAPER_END_TO_END_1024}; worst case ≈ {PAPER_WORST_1024:,} cycles at N = 1024.", ""]
    out += fpga_table(fpga_reports)
    return "\n".join(out)


def fpga_table(reports):
    """Markdown lines of a table of ``(label, FpgaReport)`` pairs (none: no lines)."""
    if not reports:
        return []
    out = ["| board | configuration | seed | Fmax MHz | LUT | FF | DSP | BRAM | build s |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, report in reports:
        out.append(f"| {report.board} | {label} | {report.seed} | {report.fmax_mhz:.1f} | "
                   f"{report.lut} / {report.lut_limit} | {report.ff} | {report.dsp} | {report.bram} | "
                   f"{report.elapsed_s:.0f} |")
    return out + [""]


def replace_section(path, name, body):
    """Replace (or append) the ``<!-- bench:name -->`` section of a markdown file."""
    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    section = f"{begin}\n{body}\n{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip("\n") + f"\n\n## {name}\n\n{section}\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def run_bench(block, cfg, args):
    """Entry point of ``attnforge bench BLOCK``: the block's registered benchmark."""
    from .blocks import BLOCKS, load_object
    if BLOCKS[block].bench_path is None:
        raise SystemExit(f"error: no benchmark for block {block!r} yet")
    return load_object(BLOCKS[block].bench_path)(cfg, args)


def topk_main(cfg, args):
    """``attnforge bench topk`` (args: sim, boards, skip_fpga, output, seeds, lengths)."""
    from ..configs.topk import TopKConfig
    from ..fpga.build import build
    from .blocks import BLOCKS

    command = "attnforge " + " ".join(sys.argv[1:])
    rows = topk_bench(cfg, sim=args.sim, lengths=getattr(args, "lengths", None) or (128, 512, 1024, 2048))
    reports = []
    if not args.skip_fpga:
        targets = {"ulx3s-85f": ("default", cfg),
                   "icebreaker": ("width=8 n_max=64 lanes=2 comparators=4",
                                  TopKConfig(width=8, n_max=64, lanes=2, comparators=4))}
        for board in args.boards or list(targets):
            label, board_cfg = targets[board]
            for seed in range(1, getattr(args, "seeds", 1) + 1):
                log(f"FPGA build: {board}, {label}, seed {seed}")
                report = build(BLOCKS["topk"].component(board_cfg), board, name="topk",
                               build_dir="build/fpga", seed=seed, progress=log)
                print(report.table())
                reports.append((label, report))
    markdown = _topk_markdown(cfg, rows, reports, command)
    print(markdown)
    if args.output:
        replace_section(args.output, "topk", markdown)
        log(f"wrote the topk section of {args.output}")
