"""``attnforge bench qk``: the Q/K front end measured on its generated Verilog.

* **Throughput** (``--lengths``, default 128, 512, 1024; ``n_max`` raised to N when
  needed): one head of N random keys and 12 queries through the RTL with the memory never
  stalling, every row checked bit-exact against sim/qk.py. *summarization* rows after the
  first find their keys on chip: cycles per row in steady state (the spacing of the rows'
  last outputs) against the compute limit ``N·D / multipliers`` = ``N / L``, and the MACs
  per cycle that gives. *generation* rows fetch their MSB planes every time: cycles per row
  against the memory limit (the MSB rows' AXI beats). Threshold 0 (no row refetches) and 1
  (every row does).
* **MiniLM-L6** (512-token passage, all 72 heads, every query; sim/qk.py, which the RTL
  matches bit for bit — checked here on two heads per setting): refetch rate, DRAM bytes
  against a dense 12-bit fetch in both modes, and the largest probability error against the
  fp32 model's softmax, for 6+4 and 8+4 at thresholds 0.05 and 0.1.
* **FPGA** (unless ``--skip-fpga``): the block on the ULX3S-85F.
"""

import dataclasses
import sys
import time

import numpy as np

from .bench import fpga_table, log, replace_section

__all__ = ["throughput_bench", "minilm_bench", "main"]

ROWS = 12
PAPER_REFETCH = "5.9 % of inputs need LSBs (GPT-2, [P])"


def _steady(result, first=2):
    """Cycles per row in steady state: the mean of the per-row spacing from row ``first`` on."""
    cycles = np.asarray(result["cycles"])
    return float(np.mean(cycles[first:]))


def throughput_bench(cfg, *, sim="verilator", lengths=(128, 512, 1024), build_root=None):
    """Cycles per row over N, mode and threshold; returns rows of measurements."""
    from ..tb.qk import Head, compare, simulate

    rng = np.random.default_rng(2021)
    rows = []
    for n in lengths:
        run_cfg = dataclasses.replace(cfg, n_max=max(cfg.n_max, n))
        lim = 1 << (run_cfg.key_bits - 1)
        keys = rng.integers(-lim, lim, (n, run_cfg.head_dim))
        q = rng.integers(-2048, 2048, (ROWS, run_cfg.head_dim))
        for mode in ("summarization", "generation"):
            for threshold in (0, 1 << run_cfg.prob_frac_bits):
                head = Head.make(q, keys, 1.0 / (2048 * lim), int(threshold), mode, cfg=run_cfg)
                started = time.monotonic()
                result = simulate([head], run_cfg, sim=sim, build_root=build_root)
                compare([head], result, run_cfg)
                lanes = run_cfg.scores_per_cycle
                msb_beats = n * run_cfg.msb_row_bytes // run_cfg.beat_bytes
                lsb_beats = n * run_cfg.lsb_row_bytes // run_cfg.beat_bytes
                refetch = bool(threshold)
                steady = _steady(result)
                rows.append({
                    "n": n, "mode": mode, "refetch": refetch, "first": int(result["cycles"][0]),
                    "steady": steady, "compute": -(-n // lanes) * (2 if refetch else 1),
                    "memory": (msb_beats + lsb_beats * refetch) if mode == "generation" else 0,
                    "macs": n * run_cfg.head_dim * (2 if refetch else 1) / steady,
                    "multipliers": run_cfg.multipliers, "squashed": result["counters"]["squashed"],
                })
                log(f"N={n:5d} {mode:13s} refetch={refetch!s:5s} first row {rows[-1]['first']:6d}, "
                    f"{steady:8.1f} cycles/row [{time.monotonic() - started:.1f} s]")
    return rows


def minilm_bench(cfg, *, sim="verilator", build_root=None):
    """Progressive quantization on every MiniLM head (model), two heads per setting on the RTL."""
    from ..sim import minilm
    from ..sim import qk as model
    from ..sim.softmax import threshold_code
    from ..tb.qk import Head, compare, simulate

    trace = minilm._passage_trace(minilm.LONG_PASSAGE)
    length = trace.q[0].shape[1]
    rows = []
    for msb_bits in (6, 8):
        run_cfg = dataclasses.replace(cfg, msb_bits=msb_bits, n_max=max(cfg.n_max, 1 << (length - 1).bit_length()))
        for threshold in (0.05, 0.1):
            code = threshold_code(threshold, run_cfg)
            refetched = total = 0
            traffic = {"generation": [0, 0], "summarization": [0, 0]}
            err = 0.0
            for layer in range(minilm.NUM_LAYERS):
                for h in range(minilm.NUM_HEADS):
                    q, k, scale = minilm.qk_head(layer, h, run_cfg.key_bits, minilm.LONG_PASSAGE)
                    every = np.ones((len(q), len(k)), dtype=bool)
                    for mode, pair in traffic.items():
                        res = model.attention_probs(q, k, scale, run_cfg, code, mode)
                        pair[0] += int(res.dram_bytes.sum())
                        pair[1] += int(model.dense_bytes(every, mode, run_cfg).sum())
                    refetched += int(res.refetched.sum())
                    total += len(q)
                    err = max(err, float(np.abs(res.probs / 2.0 ** run_cfg.prob_frac_bits
                                                - trace.probs[layer][h]).max()))
            started = time.monotonic()
            heads = []
            for mode, (layer, h) in zip(("summarization", "generation"), ((2, 5), (4, 1))):
                q, k, scale = minilm.qk_head(layer, h, run_cfg.key_bits, minilm.LONG_PASSAGE)
                picked = np.linspace(0, len(q) - 1, 8).astype(int)
                heads.append(Head.make(q[picked], k, scale, threshold, mode, None, f"L{layer}H{h}", run_cfg))
            result = simulate(heads, run_cfg, sim=sim, build_root=build_root)
            compare(heads, result, run_cfg)
            rows.append({"setting": f"{msb_bits}+4", "threshold": threshold, "rows": total,
                         "refetch": refetched / total,
                         "gen": traffic["generation"][0] / traffic["generation"][1],
                         "summ": traffic["summarization"][0] / traffic["summarization"][1],
                         "err": err, "rtl_rows": sum(len(hd.q) for hd in heads),
                         "rtl_cycles": float(np.mean(result["cycles"][1:8]))})
            log(f"MiniLM {msb_bits}+4 t={threshold}: refetch {refetched / total:.3f}, RTL bit-exact on "
                f"{rows[-1]['rtl_rows']} rows [{time.monotonic() - started:.1f} s]")
    return length, rows


def _markdown(cfg, rows, length, minilm_rows, reports, command):
    lanes = cfg.scores_per_cycle
    out = [f"Command: `{command}`", "",
           f"Configuration: head_dim={cfg.head_dim}, multipliers={cfg.multipliers} (L = {lanes} scores/cycle), "
           f"msb_bits={cfg.msb_bits}, lsb_bits={cfg.lsb_bits}, axi_data_width={cfg.axi_data_width}; "
           f"n_max = max({cfg.n_max}, N). One head of N random keys, {ROWS} queries, the AXI RAM never "
           "stalling; every row checked bit-exact against sim/qk.py (probabilities, decisions, bytes).", "",
           "Steady: cycles per row from the third row on (the spacing of the rows' last outputs). "
           "Compute limit: N/L cycles per pass (N·D MACs on the multipliers). Memory limit: the AXI beats "
           "of the planes a generation row fetches. First row: head accepted to its last output "
           "(includes fetching the MSB plane).", "",
           "| N | mode | refetch | first row | steady cycles/row | compute limit | memory limit | "
           "× limit | MACs/cycle | × multipliers |",
           "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        limit = max(r["compute"], r["memory"])
        out.append(f"| {r['n']} | {r['mode']} | {'every row' if r['refetch'] else 'none'} | {r['first']} | "
                   f"{r['steady']:.1f} | {r['compute']} | {r['memory'] or '–'} | {r['steady'] / limit:.2f} | "
                   f"{r['macs']:.1f} | {r['macs'] / r['multipliers']:.2f} |")
    out += ["", f"MiniLM-L6, the {length}-token passage, all 72 heads × {length} queries (sim/qk.py; the RTL "
            "ran 16 of the rows per setting, two heads, bit-exact, cycles/row beside). DRAM: bytes "
            "read with progressive quantization / a dense 12-bit fetch of the same keys. Error: "
            f"max |p − fp32 softmax of the unquantized model|. The paper: {PAPER_REFETCH}.", "",
            "| setting | threshold | refetch rate | DRAM generation | DRAM summarization | max error | "
            "RTL cycles/row |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for r in minilm_rows:
        out.append(f"| {r['setting']} | {r['threshold']} | {100 * r['refetch']:.1f} % | {r['gen']:.3f} | "
                   f"{r['summ']:.3f} | {r['err']:.4f} | {r['rtl_cycles']:.0f} |")
    out.append("")
    return "\n".join(out + fpga_table(reports))


def main(cfg, args):
    """``attnforge bench qk`` (args: sim, lengths, skip_fpga, seeds, output)."""
    from ..fpga.build import build
    from .blocks import BLOCKS

    command = "attnforge " + " ".join(sys.argv[1:])
    lengths = getattr(args, "lengths", None) or (128, 512, 1024)
    rows = throughput_bench(cfg, sim=args.sim, lengths=lengths)
    length, minilm_rows = minilm_bench(cfg, sim=args.sim)
    reports = []
    if not args.skip_fpga:
        for seed in range(1, getattr(args, "seeds", 1) + 1):
            log(f"FPGA build: ulx3s-85f, default, seed {seed}")
            report = build(BLOCKS["qk"].component(cfg), "ulx3s-85f", name="qk", build_dir="build/fpga",
                           seed=seed, progress=log)
            print(report.table())
            reports.append(("default", report))
    markdown = _markdown(cfg, rows, length, minilm_rows, reports, command)
    print(markdown)
    if args.output:
        replace_section(args.output, "qk", markdown)
        log(f"wrote the qk section of {args.output}")
