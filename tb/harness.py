"""What every block's cocotb test shares: reading the job, clock and reset, writing results."""

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from .streams import CycleCounter, Payload

__all__ = ["Bench", "start"]


class Bench:
    """The job's inputs, the manifest's payloads, the clock and its cycle counter."""

    def __init__(self, dut):
        self.dut = dut
        with np.load(os.environ["ATTNFORGE_JOB"], allow_pickle=False) as job:
            self.job = {name: job[name] for name in job.files}
        with open(os.environ["ATTNFORGE_MANIFEST"]) as f:
            self.manifest = json.load(f)
        self.period_ns = int(os.environ.get("ATTNFORGE_CLOCK_NS", "10"))
        self.counter = CycleCounter(self.period_ns)
        seed = int(self.job.get("seed", 0))
        self.rng = random.Random(seed)

    def payload(self, stream):
        return Payload(self.manifest["streams"][stream]["fields"])

    def rate(self, name):
        return float(self.job.get(name, 1.0))

    def save(self, **arrays):
        np.savez(os.environ["ATTNFORGE_RESULT"], **arrays)


async def start(dut):
    """Start the clock, hold reset for two cycles; return the :class:`Bench`."""
    bench = Bench(dut)
    cocotb.start_soon(Clock(dut.clk, bench.period_ns, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    return bench
