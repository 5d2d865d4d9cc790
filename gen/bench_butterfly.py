"""``attnforge bench butterfly``: the butterfly array measured on its generated Verilog.

For each transform length N (default 64, 256, 1024; ``--lengths``), on the configuration
given with ``--set`` (``n_max`` raised to N when needed) and, when that is longer, on the
array generated for N (``n_max = N``): an array of ``log2(n_max)`` columns runs an N-point
transform on ``log2 N`` of them, so its utilization at run-time length N is at most
``log2 N / log2 n_max``, and the array sized to N shows the dataflow's own:

* **FFT**: 8 transforms back to back at full rate through the RTL, checked bit-exact
  against sim/butterfly.py and against the cycle model; cycles per transform in steady
  state (between consecutive last outputs) against the input-rate limit ``N/lanes`` and
  FABNet's ``N/(2·units)·log2 N`` at the same number of butterfly units; butterfly-unit
  utilization = butterflies needed (``N/2·log2 N``) / (PEs × cycles per transform).
* **SQNR** of the RTL's output (descaled) against ``numpy.fft.fft``: random complex input
  at the documented no-saturation magnitude, and MiniLM-L6 hidden states (layer 3, the
  flattened tokens × features matrix cut into N-sample rows); beside it the block-floating
  variant of the model (sim only: the array implements the fixed policy).
* **Butterfly linear**: 8 rows through a layer of Gaussian weights (mode REAL), bit-exact,
  cycles per transform, SQNR against the dense float product.
* **FNet**: frames through the chained two-array block, cycles per frame against
  ``L·D/lanes``, utilization of both arrays.
* **Butterfly FFN** (block ``bffn``): rows through two butterfly-linear arrays chained
  column to column with a ReLU between, on one configuration (``lanes`` of ``--set``,
  ``n_max`` = the largest N of :data:`FFN_LENGTHS`): cycles per row against ``N/lanes``,
  utilization of both arrays' PEs, SQNR against the float FFN ``relu(x @ B1.T) @ B2.T``
  (random half-scale rows and MiniLM rows, each batch with its own calibrated shifts).

``--only fft|fnet|bffn`` runs one part; with ``--output`` it rewrites only that part's
markers inside the butterfly section (``<!-- bench:butterfly-fft -->`` …).

Cycles come from simulation; nothing here is asserted but bit-exactness.
"""

import dataclasses
import sys
import time

import numpy as np

from .bench import log, replace_section

__all__ = ["butterfly_bench", "fnet_bench", "bffn_bench", "main"]

TRANSFORMS = 8
#: row lengths of the FFN benchmark (its n_max is the largest)
FFN_LENGTHS = (64, 128, 256)
#: the parts of the benchmark, in the section's order
PARTS = ("fft", "fnet", "bffn")


def _steady(result):
    """Cycles per transform in steady state: the spacing of the last outputs."""
    last = np.asarray(result["last_out"])
    return float(np.mean(np.diff(last))) if len(last) > 1 else float(result["cycles"][0])


def _fft_inputs(cfg, n, rng, count):
    amp = ((1 << (cfg.width - 1)) - 2 * (n.bit_length() - 1)) / np.sqrt(2)
    re = np.trunc(rng.uniform(-amp, amp, (count, n))).astype(np.int64)
    im = np.trunc(rng.uniform(-amp, amp, (count, n))).astype(np.int64)
    return re, im


def _minilm_rows(cfg, n, count):
    from ..sim import minilm
    from ..tb.butterfly import _minilm_hidden
    flat = np.asarray(_minilm_hidden(0)[3], dtype=np.float64).ravel()
    rows = flat[:count * n].reshape(count, n)
    q, _ = minilm.quantize_symmetric(rows, cfg.width)
    return q


def _array_sizes(cfg, n):
    """The ``n_max`` an N-point transform is measured on: the configuration's (raised to N)
    and, when longer, N's own."""
    given = max(cfg.n_max, n)
    return (given, n) if given > n and n >= max(cfg.lanes, 2) else (given,)


def butterfly_bench(cfg, *, sim="verilator", lengths=(64, 256, 1024), build_root=None):
    """Measure FFT and butterfly-linear transforms of each length, on each of its array
    sizes (:func:`_array_sizes`); return rows of numbers."""
    rows = []
    rng = np.random.default_rng(2022)
    for n in lengths:
        for n_max in _array_sizes(cfg, n):
            rows.append(_fft_row(dataclasses.replace(cfg, n_max=n_max), n, rng, sim, build_root))
    return rows


def _fft_row(run_cfg, n, rng, sim, build_root):
    """FFT (and, with ``linear``, butterfly-linear) transforms of length ``n`` on ``run_cfg``."""
    from ..sim import butterfly as model
    from ..tb.butterfly import Layer, compare, random_twiddle, simulate
    pes = run_cfg.lanes // 2 * run_cfg.stages_max
    log2n = n.bit_length() - 1
    started = time.monotonic()
    re, im = _fft_inputs(run_cfg, n, rng, TRANSFORMS)
    real = _minilm_rows(run_cfg, n, TRANSFORMS)
    # random complex, then MiniLM rows, all back to back
    batch_re = np.concatenate([re, real])
    batch_im = np.concatenate([im, np.zeros_like(real)])
    result = simulate(batch_re, batch_im, run_cfg, sim=sim, build_root=build_root)
    compare(batch_re, batch_im, result, run_cfg, check_cycles=True)   # raises on a mismatch
    out = model.descale(np.asarray(result["re"]) + 1j * np.asarray(result["im"]),
                        result["scale_log2"])
    exact = np.fft.fft(batch_re + 1j * batch_im)
    k = TRANSFORMS
    bre, bim, bscale = model.fft(batch_re, batch_im, run_cfg, scaling="block")
    block = model.descale(bre + 1j * bim, bscale)
    cycles = _steady({"last_out": result["last_out"][:k], "cycles": result["cycles"]})
    row = {
        "n": n, "lanes": run_cfg.lanes, "n_max": run_cfg.n_max, "pes": pes,
        "latency": int(result["cycles"][0]), "cycles": cycles, "limit": n / run_cfg.lanes,
        "fabnet": n / (2 * pes) * log2n, "utilization": (n / 2 * log2n) / (pes * cycles),
        "sqnr_random": model.sqnr_db(out[:k], exact[:k]),
        "sqnr_minilm": model.sqnr_db(out[k:], exact[k:]),
        "sqnr_block_random": model.sqnr_db(block[:k], exact[:k]),
        "sqnr_block_minilm": model.sqnr_db(block[k:], exact[k:]),
        "model_exact": True,
    }
    if run_cfg.linear:
        x = rng.integers(run_cfg.data_min // 2, run_cfg.data_max // 2 + 1, (TRANSFORMS, n))
        twiddle = random_twiddle(n, rng)
        layer = Layer(twiddle, run_cfg, x=x)
        lin = simulate(x, None, run_cfg, modes=[1] * TRANSFORMS, layer=layer, sim=sim,
                       build_root=build_root)
        compare(x, None, lin, run_cfg, modes=[1] * TRANSFORMS, layer=layer,
                check_cycles=True)
        y = model.descale(np.asarray(lin["re"]), lin["scale_log2"])
        lin_cycles = _steady(lin)
        row.update({
            "linear_latency": int(lin["cycles"][0]), "linear_cycles": lin_cycles,
            "linear_utilization": (n / 2 * log2n) / (pes * lin_cycles),
            "sqnr_linear": model.sqnr_db(y, model.butterfly_float(x, twiddle)),
            "linear_shifts": layer.shifts,
            "sqnr_linear_static": model.sqnr_db(
                model.descale(*model.butterfly(x, twiddle, run_cfg, scaling="static")),
                model.butterfly_float(x, twiddle)),
        })
    log(f"N={n:5d} n_max={run_cfg.n_max} lanes={run_cfg.lanes} PEs={pes}: {cycles:.1f} "
        f"cycles/transform (N/lanes {row['limit']:.0f}, FABNet {row['fabnet']:.0f}), "
        f"utilization {row['utilization']:.1%}, SQNR {row['sqnr_random']:.1f} dB random / "
        f"{row['sqnr_minilm']:.1f} dB MiniLM [{time.monotonic() - started:.1f} s]")
    return row


def fnet_bench(cfg, shapes, *, sim="verilator", build_root=None, frames=4):
    """Frames of each ``(L, D)`` through the FNet block; return rows of numbers."""
    from ..sim import butterfly as model
    from ..tb.butterfly import compare_fnet, simulate_fnet
    rows = []
    rng = np.random.default_rng(2020)
    pes = 2 * (cfg.lanes // 2 * cfg.stages_max)
    for l, d in shapes:
        lo, hi = cfg.data_min, cfg.data_max
        xs = [rng.integers(lo // 2, hi // 2 + 1, (l, d)) for _ in range(frames)]
        result = simulate_fnet(xs, cfg, sim=sim, build_root=build_root)
        compare_fnet(xs, result, cfg)
        cycles = _steady(result)
        butterflies = l * d / 2 * ((l.bit_length() - 1) + (d.bit_length() - 1))
        y = np.stack([model.descale(v, s) for v, s in zip(result["y"], result["scale_log2"])])
        rows.append({"l": l, "d": d, "latency": int(result["cycles"][0]), "cycles": cycles,
                     "limit": l * d / cfg.lanes, "pes": pes,
                     "utilization": butterflies / (pes * cycles),
                     "sqnr": model.sqnr_db(y, model.fnet_float(np.stack(xs)))})
        log(f"FNet {l}×{d}: {cycles:.1f} cycles/frame (L·D/lanes {l * d / cfg.lanes:.0f}), "
            f"utilization {rows[-1]['utilization']:.1%}")
    return rows


def bffn_bench(cfg, lengths=FFN_LENGTHS, *, sim="verilator", build_root=None):
    """Rows of each length through the butterfly FFN block, on each of its array sizes
    (:func:`_array_sizes`: ``cfg.n_max``, and N's own); return rows of numbers."""
    from ..sim import butterfly as model
    from ..tb.butterfly import FFN, compare_bffn, random_twiddle, simulate_bffn
    rows = []
    rng = np.random.default_rng(2024)
    for n, n_max in ((n, n_max) for n in lengths for n_max in _array_sizes(cfg, n)):
        cfg_n = dataclasses.replace(cfg, n_max=n_max)
        pes = 2 * (cfg_n.lanes // 2 * cfg_n.stages_max)
        log2n = n.bit_length() - 1
        tw1, tw2 = random_twiddle(n, rng), random_twiddle(n, rng)
        inputs = {"random": rng.integers(cfg_n.data_min // 2, cfg_n.data_max // 2 + 1,
                                         (TRANSFORMS, n)),
                  "minilm": _minilm_rows(cfg_n, n, TRANSFORMS)}
        row = {"n": n, "n_max": n_max, "pes": pes, "limit": n / cfg_n.lanes}
        for kind, x in inputs.items():
            ffn = FFN(tw1, tw2, cfg_n, x=x)
            result = simulate_bffn(x, ffn, cfg_n, sim=sim, build_root=build_root)
            compare_bffn(x, result, ffn, cfg_n, check_cycles=True)   # raises on a mismatch
            approx = model.descale(result["y"], result["scale_log2"])
            row[f"sqnr_{kind}"] = model.sqnr_db(approx, model.ffn_float(x, tw1, tw2))
            if kind == "random":
                cycles = _steady(result)
                row.update({"latency": int(result["cycles"][0]), "cycles": cycles,
                            "utilization": 2 * (n / 2 * log2n) / (pes * cycles),
                            "shifts": [layer.shifts for layer in ffn.layers]})
        rows.append(row)
        log(f"bffn N={n:4d} n_max={n_max} lanes={cfg_n.lanes} PEs={pes}: "
            f"{row['cycles']:.1f} cycles/row (N/lanes {row['limit']:.0f}), utilization {row['utilization']:.1%}, SQNR "
            f"{row['sqnr_random']:.1f} dB random / {row['sqnr_minilm']:.1f} dB MiniLM")
    return rows


def _multiplier_note(cfg):
    """How many real multipliers the array of ``cfg`` uses, and why."""
    per_pe = ("4 per PE (two-mode PEs)" if cfg.linear else
              "3 per PE, none in the first two columns (FFT-only PEs)")
    return f"{cfg.array_multipliers} multipliers at n_max = {cfg.n_max}: {per_pe}"


def _fft_markdown(cfg, rows):
    out = [f"Configuration: width={cfg.width}, twiddle_bits={cfg.twiddle_bits}, lanes={cfg.lanes}, "
           f"n_max = max({cfg.n_max}, N) and, below it, N (the array generated for N), "
           f"linear={cfg.linear}; PEs = lanes/2·log2(n_max), "
           f"{_multiplier_note(cfg)}. "
           f"{TRANSFORMS} random transforms then {TRANSFORMS} MiniLM rows back to back at full "
           "rate on the generated Verilog (Verilator), every output checked bit-exact against "
           "sim/butterfly.py and every cycle count against its cycle model. Cycles/transform: "
           "steady-state spacing of the outputs. FABNet: N/(2·units)·log2 N with units = our PEs. "
           "Utilization: N/2·log2 N butterflies / (PEs × cycles/transform); on an array "
           "longer than N it is at most log2 N / log2 n_max (the columns past log2 N pass "
           "the data through).", "",
           "| N | n_max | PEs | latency | cycles/transform | N/lanes | FABNet | samples/cycle | utilization "
           "| SQNR random | SQNR MiniLM | block-float (model) random / MiniLM |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        out.append(f"| {r['n']} | {r['n_max']} | {r['pes']} | {r['latency']} | {r['cycles']:.1f} | {r['limit']:.0f} | "
                   f"{r['fabnet']:.0f} | {r['n'] / r['cycles']:.2f} | {r['utilization']:.1%} | "
                   f"{r['sqnr_random']:.1f} dB | {r['sqnr_minilm']:.1f} dB | "
                   f"{r['sqnr_block_random']:.1f} / {r['sqnr_block_minilm']:.1f} dB |")
    if rows and "linear_cycles" in rows[0]:
        out += ["", "Butterfly linear layers (PE real mode, Gaussian weights σ = 0.7, inputs at half "
                "scale, weights written through the `w` stream first; cycles checked against "
                "sim/butterfly.array_cycles; stage shifts block-floating over the batch, computed by the host; the static worst-case shifts from the model "
                "for comparison):", "",
                "| N | n_max | latency | cycles/transform | N/lanes | utilization | shifts "
                "| SQNR vs float product | static shifts (model) |",
                "|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
        for r in rows:
            out.append(f"| {r['n']} | {r['n_max']} | {r['linear_latency']} | {r['linear_cycles']:.1f} | "
                       f"{r['limit']:.0f} | {r['linear_utilization']:.1%} | {r['linear_shifts']} | "
                       f"{r['sqnr_linear']:.1f} dB | {r['sqnr_linear_static']:.1f} dB |")
    out.append("")
    return "\n".join(out)


def _fnet_markdown(fnet_cfg, fnet_rows):
    out = []
    if fnet_rows:
        out += [f"FNet (two chained arrays through the on-chip transpose; width={fnet_cfg.width}, "
                f"lanes={fnet_cfg.lanes}, n_max={fnet_cfg.n_max}, frame_max={fnet_cfg.frame_max}; "
                "4 frames back to back, half-scale random, bit-exact against sim/butterfly.fnet):", "",
                "| L×D | PEs (both arrays) | latency | cycles/frame | L·D/lanes | utilization | SQNR vs fft2 |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for r in fnet_rows:
            out.append(f"| {r['l']}×{r['d']} | {r['pes']} | {r['latency']} | {r['cycles']:.1f} | "
                       f"{r['limit']:.0f} | {r['utilization']:.1%} | {r['sqnr']:.1f} dB |")
    out.append("")
    return "\n".join(out)


def _bffn_markdown(cfg, rows):
    out = [f"Butterfly FFN (block `bffn`): layer → ReLU → layer on two butterfly-linear arrays "
           f"chained column to column, no buffer between them (width={cfg.width}, "
           f"twiddle_bits={cfg.twiddle_bits}, lanes={cfg.lanes}, n_max={cfg.n_max} and, below it, "
           "N: the arrays generated for N). "
           f"{TRANSFORMS} rows back to back at full rate, Gaussian weights σ = 0.7 written for "
           "both layers through the one weight stream first, stage shifts calibrated on each "
           "batch by the host (layer 2 on the ReLU of layer 1); every output bit-exact against "
           "sim/butterfly.ffn and every cycle count equal to sim/butterfly.ffn_cycles. "
           "Utilization: 2 · N/2 · log2 N butterflies / (PEs of both arrays × cycles/row). SQNR "
           "against relu(x @ B1.T) @ B2.T in float: half-scale random rows, and MiniLM-L6 hidden "
           "states (layer 3, flattened, cut into N-sample rows).", "",
           "| N | n_max | PEs (both arrays) | latency | cycles/row | N/lanes | utilization | shifts "
           "(layer 1; layer 2) | SQNR random | SQNR MiniLM |",
           "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        shifts = "; ".join(str(s) for s in r["shifts"])
        out.append(f"| {r['n']} | {r['n_max']} | {r['pes']} | {r['latency']} | {r['cycles']:.1f} | "
                   f"{r['limit']:.0f} | {r['utilization']:.1%} | {shifts} | "
                   f"{r['sqnr_random']:.1f} dB | {r['sqnr_minilm']:.1f} dB |")
    out.append("")
    return "\n".join(out)


def _part(name, body, command=None):
    """One part of the section between its markers (headed by the command when given)."""
    head = f"Command: `{command}`\n\n" if command else ""
    return f"<!-- bench:butterfly-{name} -->\n{head}{body}\n<!-- /bench:butterfly-{name} -->"


def main(cfg, args):
    """``attnforge bench butterfly`` (args: sim, lengths, only, output; FPGA builds are not run
    here)."""
    command = "attnforge " + " ".join(sys.argv[1:])
    only = getattr(args, "only", None)
    if only is not None and only not in PARTS:
        raise SystemExit(f"error: --only {only} is not a part of the butterfly benchmark: "
                         f"expected one of {', '.join(PARTS)}")
    parts = {}
    if only in (None, "fft"):
        lengths = getattr(args, "lengths", None) or (64, 256, 1024)
        rows = butterfly_bench(cfg, sim=args.sim, lengths=lengths)
        parts["fft"] = _fft_markdown(cfg, rows)
    if only in (None, "fnet"):
        fnet_cfg = dataclasses.replace(cfg, n_max=64, frame_max=4096)
        parts["fnet"] = _fnet_markdown(fnet_cfg, fnet_bench(fnet_cfg, [(64, 64), (16, 64)],
                                                            sim=args.sim))
    if only in (None, "bffn"):
        ffn_cfg = dataclasses.replace(cfg, n_max=max(FFN_LENGTHS), linear=1)
        parts["bffn"] = _bffn_markdown(ffn_cfg, bffn_bench(ffn_cfg, sim=args.sim))
    if not args.skip_fpga:
        log("FPGA builds of the butterfly array are not part of this benchmark yet "
            "(use `attnforge fpga butterfly --board …`)")
    if only is None:
        markdown = "\n".join(_part(name, parts[name], command) for name in PARTS)
        print(markdown)
        if args.output:
            replace_section(args.output, "butterfly", markdown)
            log(f"wrote the butterfly section of {args.output}")
        return
    print(parts[only])
    if args.output:
        _replace_part(args.output, only, f"Command: `{command}`\n\n{parts[only]}")
        log(f"wrote the butterfly-{only} part of {args.output}")


def _replace_part(path, name, body):
    """Rewrite one part's markers inside the butterfly section (added at its end if missing)."""
    from pathlib import Path
    text = Path(path).read_text() if Path(path).exists() else ""
    begin, end = "<!-- bench:butterfly -->", "<!-- /bench:butterfly -->"
    if f"<!-- bench:butterfly-{name} -->" not in text:
        if begin not in text:
            replace_section(path, "butterfly", _part(name, ""))
        else:
            Path(path).write_text(text.replace(end, _part(name, "") + "\n" + end, 1))
    replace_section(path, f"butterfly-{name}", body)
