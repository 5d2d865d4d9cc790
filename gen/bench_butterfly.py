"""``attnforge bench butterfly``: the butterfly array measured on its generated Verilog.

For each transform length N (default 64, 256, 1024; ``--lengths``), on the configuration
given with ``--set`` (``n_max`` raised to N when needed):

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
* **FNet** (``--fnet``, default on): frames through the chained two-array block, cycles per
  frame against ``L·D/lanes``, utilization of both arrays.

Cycles come from simulation; nothing here is asserted but bit-exactness.
"""

import dataclasses
import sys
import time

import numpy as np

from .bench import log, replace_section

__all__ = ["butterfly_bench", "fnet_bench", "main"]

TRANSFORMS = 8


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


def butterfly_bench(cfg, *, sim="verilator", lengths=(64, 256, 1024), build_root=None):
    """Measure FFT and butterfly-linear transforms of each length; return rows of numbers."""
    from ..sim import butterfly as model
    from ..tb.butterfly import Layer, compare, random_twiddle, simulate

    rows = []
    rng = np.random.default_rng(2022)
    for n in lengths:
        run_cfg = dataclasses.replace(cfg, n_max=max(cfg.n_max, n))
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
        rows.append(row)
        log(f"N={n:5d} lanes={run_cfg.lanes} PEs={pes}: {cycles:.1f} cycles/transform "
            f"(N/lanes {row['limit']:.0f}, FABNet {row['fabnet']:.0f}), utilization "
            f"{row['utilization']:.1%}, SQNR {row['sqnr_random']:.1f} dB random / "
            f"{row['sqnr_minilm']:.1f} dB MiniLM [{time.monotonic() - started:.1f} s]")
    return rows


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


def _markdown(cfg, rows, fnet_cfg, fnet_rows, command):
    out = [f"Command: `{command}`", "",
           f"Configuration: width={cfg.width}, twiddle_bits={cfg.twiddle_bits}, lanes={cfg.lanes}, "
           f"n_max = max({cfg.n_max}, N); PEs = lanes/2·log2(n_max), 4 multipliers each. "
           f"{TRANSFORMS} random transforms then {TRANSFORMS} MiniLM rows back to back at full "
           "rate on the generated Verilog (Verilator), every output checked bit-exact against "
           "sim/butterfly.py and every cycle count against its cycle model. Cycles/transform: "
           "steady-state spacing of the outputs. FABNet: N/(2·units)·log2 N with units = our PEs. "
           "Utilization: N/2·log2 N butterflies / (PEs × cycles/transform).", "",
           "| N | PEs | latency | cycles/transform | N/lanes | FABNet | samples/cycle | utilization "
           "| SQNR random | SQNR MiniLM | block-float (model) random / MiniLM |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        out.append(f"| {r['n']} | {r['pes']} | {r['latency']} | {r['cycles']:.1f} | {r['limit']:.0f} | "
                   f"{r['fabnet']:.0f} | {r['n'] / r['cycles']:.2f} | {r['utilization']:.1%} | "
                   f"{r['sqnr_random']:.1f} dB | {r['sqnr_minilm']:.1f} dB | "
                   f"{r['sqnr_block_random']:.1f} / {r['sqnr_block_minilm']:.1f} dB |")
    if rows and "linear_cycles" in rows[0]:
        out += ["", "Butterfly linear layers (PE real mode, Gaussian weights σ = 0.7, inputs at half "
                "scale, weights written through the `w` stream first; cycles checked against "
                "sim/butterfly.array_cycles; stage shifts block-floating over the batch, computed by the host; the static worst-case shifts from the model "
                "for comparison):", "",
                "| N | latency | cycles/transform | N/lanes | utilization | shifts | SQNR vs float product "
                "| static shifts (model) |",
                "|---:|---:|---:|---:|---:|---|---:|---:|"]
        for r in rows:
            out.append(f"| {r['n']} | {r['linear_latency']} | {r['linear_cycles']:.1f} | "
                       f"{r['limit']:.0f} | {r['linear_utilization']:.1%} | {r['linear_shifts']} | "
                       f"{r['sqnr_linear']:.1f} dB | {r['sqnr_linear_static']:.1f} dB |")
    if fnet_rows:
        out += ["", f"FNet (two chained arrays through the on-chip transpose; width={fnet_cfg.width}, "
                f"lanes={fnet_cfg.lanes}, n_max={fnet_cfg.n_max}, frame_max={fnet_cfg.frame_max}; "
                "4 frames back to back, half-scale random, bit-exact against sim/butterfly.fnet):", "",
                "| L×D | PEs (both arrays) | latency | cycles/frame | L·D/lanes | utilization | SQNR vs fft2 |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for r in fnet_rows:
            out.append(f"| {r['l']}×{r['d']} | {r['pes']} | {r['latency']} | {r['cycles']:.1f} | "
                       f"{r['limit']:.0f} | {r['utilization']:.1%} | {r['sqnr']:.1f} dB |")
    out.append("")
    return "\n".join(out)


def main(cfg, args):
    """``attnforge bench butterfly`` (args: sim, lengths, output; FPGA builds are not run here)."""
    command = "attnforge " + " ".join(sys.argv[1:])
    lengths = getattr(args, "lengths", None) or (64, 256, 1024)
    rows = butterfly_bench(cfg, sim=args.sim, lengths=lengths)
    fnet_cfg = dataclasses.replace(cfg, n_max=64, frame_max=4096)
    fnet_rows = fnet_bench(fnet_cfg, [(64, 64), (16, 64)], sim=args.sim)
    if not args.skip_fpga:
        log("FPGA builds of the butterfly array are not part of this benchmark yet "
            "(use `attnforge fpga butterfly --board …`)")
    markdown = _markdown(cfg, rows, fnet_cfg, fnet_rows, command)
    print(markdown)
    if args.output:
        replace_section(args.output, "butterfly", markdown)
        log(f"wrote the butterfly section of {args.output}")
