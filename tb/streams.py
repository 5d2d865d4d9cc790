"""cocotb drivers for the project's streams (``name__valid``, ``name__ready``, ``name__payload``).

Beats are dicts of field values, packed and unpacked through the manifest's field table
(:class:`Payload`), so a testbench names fields, never bit offsets. The source inserts
random valid gaps and the sink random ready backpressure; both record the cycle of every
transfer, counted by :class:`Clock`.

Sampling follows the usual cocotb discipline: after a rising edge the handshake of the
cycle that just ended is read, then the next cycle's valid/payload/ready are written.
"""

import random

from cocotb.simtime import get_sim_time
from cocotb.triggers import RisingEdge

__all__ = ["Payload", "CycleCounter", "StreamSource", "StreamSink", "stream_put", "stream_get"]


class Payload:
    """Pack and unpack one stream's payload from the manifest's ``fields`` table."""

    def __init__(self, fields):
        self.fields = fields

    def pack(self, beat):
        word = 0
        for name, field in self.fields.items():
            values = beat.get(name, 0)
            if field["count"] == 1:
                values = [values]
            mask = (1 << field["width"]) - 1
            for n, value in enumerate(values):
                word |= (int(value) & mask) << (field["offset"] + n * field["stride"])
        return word

    def unpack(self, word):
        beat = {}
        for name, field in self.fields.items():
            values = []
            for n in range(field["count"]):
                value = (word >> (field["offset"] + n * field["stride"])) & ((1 << field["width"]) - 1)
                if field["signed"] and value >> (field["width"] - 1):
                    value -= 1 << field["width"]
                values.append(value)
            beat[name] = values[0] if field["count"] == 1 else values
        return beat


class CycleCounter:
    """Cycle numbers from simulation time: cycle ``c`` ends at the edge at ``(c + 1) * period``."""

    def __init__(self, period_ns):
        self.period_ns = period_ns

    @property
    def ended(self):
        """The cycle whose closing edge was just awaited."""
        return round(get_sim_time("ns") / self.period_ns) - 1


class _StreamEnd:
    """The three signals of ``dut.<name>__*``, a clock, a cycle counter, a payload codec and a rate."""

    def __init__(self, dut, name, clock, counter, payload, rate, rng):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.data = getattr(dut, f"{name}__payload")
        self.clock, self.counter, self.payload = clock, counter, payload
        self.rate, self.rng = rate, rng


class StreamSource(_StreamEnd):
    """Drive beats into ``dut.<name>__*``, valid on each cycle with probability ``rate``."""

    def __init__(self, dut, name, clock, counter, payload, rate=1.0, rng=None):
        super().__init__(dut, name, clock, counter, payload, rate, rng or random.Random(0))
        self.accepted = []      # cycle of each accepted beat
        self.valid.value = 0

    async def send(self, beats):
        for beat in beats:
            while self.rate < 1.0 and self.rng.random() >= self.rate:
                self.valid.value = 0
                await RisingEdge(self.clock)
            self.data.value = self.payload.pack(beat)
            self.valid.value = 1
            while True:
                await RisingEdge(self.clock)
                if self.ready.value:
                    break
            self.accepted.append(self.counter.ended)
        self.valid.value = 0


class StreamSink(_StreamEnd):
    """Accept beats from ``dut.<name>__*``, ready on each cycle with probability ``rate``."""

    def __init__(self, dut, name, clock, counter, payload, rate=1.0, rng=None):
        super().__init__(dut, name, clock, counter, payload, rate, rng or random.Random(1))
        self.beats, self.cycles = [], []
        self.ready.value = 0

    async def recv(self, until):
        """Collect beats until ``until(beats)`` is true; return them."""
        while not until(self.beats):
            ready = self.rate >= 1.0 or self.rng.random() < self.rate
            self.ready.value = int(ready)
            await RisingEdge(self.clock)
            if ready and self.valid.value:
                self.beats.append(self.payload.unpack(int(self.data.value)))
                self.cycles.append(self.counter.ended)
        self.ready.value = 0
        return self.beats


async def stream_put(source, beats):
    """Send ``beats`` through a :class:`StreamSource` (Glasgow's helper name, for cocotb)."""
    await source.send(beats)


async def stream_get(sink, count):
    """Receive ``count`` beats through a :class:`StreamSink`."""
    return await sink.recv(lambda beats: len(beats) >= count)
