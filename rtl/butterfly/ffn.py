"""FABNet's butterfly FFN on two chained arrays: butterfly layer → ReLU → butterfly layer.

Dataflow
--------
Rows ``x`` (``N`` real samples, natural order, ``lanes`` per beat) enter a first
:class:`~.array.ButterflyArray` in butterfly-linear mode (its input bit-reversal buffer,
then its PE columns). Its last PE column feeds the second array's first column directly
(``output_order="columns"`` / ``input_order="columns"``): no reorder buffer, no input
buffer, no memory of any kind between the two layers, only one register that applies the
activation. The second array's reorder buffer puts the result in natural order. Both arrays
run at ``lanes`` samples per cycle, so rows stream back to back at the input rate, and
the two layers keep all ``2 · lanes/2 · log2(n_max)`` PEs busy when ``N = n_max``.

Arithmetic
----------
Each layer is exactly :func:`attnforge.sim.butterfly.butterfly` with the shifts written
for it; between them the **ReLU** ``max(v, 0)`` on each sample's real part (the imaginary
parts of a real-mode transform are 0). In the ``width``-bit data format it is exact: no
rounding, and no saturation, since ``0 … 2**(width-1) − 1`` lies inside the format; the
exponent of layer 1 carries through it unchanged (ReLU commutes with a positive scale). The
block's output is :func:`attnforge.sim.butterfly.ffn` bit for bit, ``y · 2**scale_log2 ≈
relu(x @ B1.T) @ B2.T`` with ``scale_log2`` the two layers' shifts and weight exponents
added (the host keeps the exponents; the hardware never sees them).

Weights
-------
**One** weight stream ``w`` for both layers: a beat is the arrays' :func:`~.array.weight_beat`
(column, PE, address, ``a, b, c, d``, the column's shift) plus ``layer`` (0: the first
array, 1: the second). The second array's places come from its chained schedule
(:meth:`.schedule.ArraySchedule.weight_map` of ``ArraySchedule(lanes, n_max,
chained=True)``). A pending write holds the input at the next row boundary; it is taken
once both arrays and the link register are empty, so a row never sees a half-written
layer, and rows sent after a write see it in both layers.

Rows: ``log2n`` on a row's first beat (``lanes ≤ N ≤ n_max``; clamped and ``error`` set
outside), ``last`` on its final beat (checked against the count: a mismatch sets
``error``, the count wins). Both layers must have the ``N`` the rows have.

Cycles: a row's last output comes ``4 + chained_array_pipeline(N)`` (``3 + …`` when
``N = lanes``) cycles after it would
leave a single array in real mode (the first array's output FIFO, the link register, the
second array's input slot and its columns in place of the first array's reorder buffer);
:func:`attnforge.sim.butterfly.ffn_cycles` replays it exactly for rows of one length at full
rate (e.g. ``lanes = 8``, ``N = n_max = 256``: 321 cycles from a row's first input to its
last output, then one row every 32 cycles).

Cost: the two arrays (``lanes·log2(n_max)`` PEs, ``4`` multipliers each), one input
bit-reversal buffer and one reorder buffer (``2·n_max`` and ``3·n_max`` complex samples), the chained
array's exchanges (``1.25·n_max − lanes`` samples, the first array's ``1.5·n_max − lanes``),
and ``lanes`` registered samples for the link.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...config import ConfigError
from ...configs.butterfly import ButterflyConfig
from ..stream import vector_beat
from .array import ButterflyArray, input_beat, weight_beat
from .pe import Mode

__all__ = ["ffn_input_beat", "ffn_output_beat", "ffn_weight_beat", "ButterflyFFN"]


def ffn_input_beat(cfg):
    """``lanes`` real samples of a row; ``log2n`` (read on its first beat); ``last``."""
    return vector_beat(cfg.lanes, signed(cfg.width), log2n=range(cfg.stages_max + 1))


def ffn_output_beat(cfg):
    """``lanes`` real outputs of a row in natural order; ``last`` on its final beat."""
    return vector_beat(cfg.lanes, signed(cfg.width))


def ffn_weight_beat(cfg):
    """One butterfly's weights for either layer: ``layer`` (0 or 1), then the fields of
    :func:`~.array.weight_beat`."""
    return data.StructLayout({"layer": 1, **dict(weight_beat(cfg).members)})


class ButterflyFFN(wiring.Component):
    """Two butterfly-linear arrays chained column to column with a ReLU between them.

    Parameters
    ----------
    config : ButterflyConfig
        ``width``, ``twiddle_bits``, ``n_max``, ``lanes`` (≥ 2) and ``linear`` (must be 1:
        both arrays run butterfly-linear layers); ``frame_max`` is not used.

    Attributes
    ----------
    i : In(stream) of :func:`ffn_input_beat`
    o : Out(stream) of :func:`ffn_output_beat`
    w : In(stream) of :func:`ffn_weight_beat`
        Both layers' weights (module docstring).
    error : Out(1)
        Sticky: a ``log2n`` out of range or a misplaced ``last`` (either array's flag).
    layers : tuple of ButterflyArray
        The two arrays; ``layers[1].schedule`` places the second layer's weights.
    pes, multipliers : int
        Of both arrays together.
    """

    @staticmethod
    def check_config(config):
        """What the FFN needs beyond :class:`ButterflyConfig`'s own checks (raises ConfigError)."""
        if config.lanes < 2:
            raise ConfigError(f"lanes={config.lanes} is out of range for the FFN: expected a "
                              f"power of two ≥ 2 (a column pairs two lanes of a beat)")
        if not config.linear:
            raise ConfigError("linear=0 is out of range for the FFN: its layers are "
                              "butterfly-linear (expected linear=1)")

    def __init__(self, config=ButterflyConfig()):
        if not isinstance(config, ButterflyConfig):
            raise TypeError(f"config must be a ButterflyConfig, not {config!r}")
        self.check_config(config)
        self.config = config
        self.layers = (ButterflyArray(config, output_order="columns"),
                       ButterflyArray(config, input_order="columns"))
        self.pes = sum(a.pes for a in self.layers)
        self.multipliers = sum(a.multipliers for a in self.layers)
        super().__init__({
            "i": In(stream.Signature(ffn_input_beat(config))),
            "o": Out(stream.Signature(ffn_output_beat(config))),
            "w": In(stream.Signature(ffn_weight_beat(config))),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        P = self.config.lanes
        first, second = self.layers
        m.submodules.layer1 = first
        m.submodules.layer2 = second

        # -- rows into the first array (real parts; mode REAL) ---------------------------------
        m.d.comb += [
            first.i.valid.eq(self.i.valid),
            self.i.ready.eq(first.i.ready),
            *(first.i.payload.data[k].re.eq(self.i.payload.data[k]) for k in range(P)),
            *(first.i.payload.data[k].im.eq(0) for k in range(P)),
            first.i.payload.log2n.eq(self.i.payload.log2n),
            first.i.payload.mode.eq(Mode.REAL),
            first.i.payload.last.eq(self.i.payload.last),
        ]

        # -- the link: the first array's last column → ReLU register → the second's input -----
        link = Signal(input_beat(self.config), name="link")
        link_valid = Signal()
        take = ~link_valid | second.i.ready
        m.d.comb += first.o.ready.eq(take)
        with m.If(take):
            m.d.sync += link_valid.eq(first.o.valid)
            with m.If(first.o.valid):
                m.d.sync += link.eq(first.o.payload)
                for k in range(P):
                    re = first.o.payload.data[k].re
                    m.d.sync += [link.data[k].re.eq(Mux(re < 0, 0, re)), link.data[k].im.eq(0)]
        m.d.comb += [second.i.valid.eq(link_valid), second.i.payload.eq(link)]

        # -- natural-order rows out (real parts) -------------------------------------------------
        m.d.comb += [
            self.o.valid.eq(second.o.valid),
            second.o.ready.eq(self.o.ready),
            *(self.o.payload.data[k].eq(second.o.payload.data[k].re) for k in range(P)),
            self.o.payload.last.eq(second.o.payload.last),
        ]

        # -- one weight stream: written when both arrays and the link are empty ----------------
        w = self.w.payload
        empty = first.w.ready & second.w.ready & ~link_valid
        m.d.comb += [first.hold.eq(self.w.valid), self.w.ready.eq(empty)]
        for n, array in enumerate(self.layers):
            m.d.comb += array.w.valid.eq(self.w.valid & empty & (w.layer == n))
            for name in weight_beat(self.config).members:
                m.d.comb += getattr(array.w.payload, name).eq(getattr(w, name))

        with m.If(first.error | second.error):
            m.d.sync += self.error.eq(1)
        return m
