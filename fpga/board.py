"""Board harness: put an arbitrary ``wiring.Component`` on an FPGA board.

A design with wide input and output ports cannot be placed on a board as-is:
its ports would need far more pins than the board has, and a design whose
outputs reach no pin is optimized away entirely by Yosys.  :class:`BoardTop`
wraps the component so that

* every *input* bit of the design (including ``ready`` of its output streams)
  is driven from a flip-flop fed by a free-running 32-bit Galois LFSR, so no
  input is constant and Yosys cannot simplify the logic behind it;
* every *output* bit (including ``valid``/``payload`` of output streams and
  ``ready`` of input streams) is XOR-reduced through a registered, pipelined
  tree into one LED, so no output logic is dead;
* optionally, the first output-stream ``valid`` drives a second LED
  (registered).

Input stimulus.  The LFSR state (32 bits) is the first stage of a delay chain
of 32-bit registers: stage *k* holds the LFSR state from *k* cycles ago.  The
design's input bits, concatenated in signature order, are sliced out of that
chain.  Every input bit therefore comes straight from its own flip-flop (each
flip-flop has a distinct D input, so Yosys cannot merge them) and the chain
costs no LUTs -- only the LFSR feedback does (a few XORs).

Output reduction.  The output bits are XORed in groups of ``xor_fanin``
(default 8: two LUT4 levels) into registers, level by level, until one bit
remains; that bit is registered once more and drives the LED.  The pipeline
keeps the harness off the critical path: the design's combinational outputs
see at most ``ceil(log4(xor_fanin))`` LUT levels before a flip-flop.

The harness runs in the ``sync`` domain; the component must also use only
``sync`` (and combinational logic).  On a board the platform creates ``sync``
from its default clock.  With ``platform=None`` (e.g. for
``amaranth.back.rtlil.convert``) the LEDs are plain signals, :attr:`led` and
:attr:`led_valid`, to be passed as ports.
"""
from amaranth.hdl import Cat, Const, Elaboratable, Module, Signal, Value
from amaranth.build import ResourceError
from amaranth.lib import io, wiring
from amaranth.lib.wiring import Flow

__all__ = ["BoardTop", "flatten_ports", "LFSR_TAPS"]

#: Galois feedback mask of the maximal-length 32-bit LFSR x^32+x^22+x^2+x+1.
LFSR_TAPS = 0x80200003


def flatten_ports(component):
    """Flatten ``component``'s signature into ``(path, flow, value)`` triples.

    ``flow`` is the direction as seen from the component: ``Flow.In`` is an
    input of the design (to be driven by the harness), ``Flow.Out`` an output.
    Nested and flipped interfaces (e.g. ``In(stream.Signature(...))``, whose
    ``ready`` is an output) and member arrays are handled by
    :meth:`wiring.Signature.flatten`.  ``value`` is cast to a plain
    :class:`Value` (views of ``data`` layouts included).
    """
    if not isinstance(component, wiring.Component):
        raise TypeError(f"BoardTop wraps a wiring.Component, not {component!r}")
    ports = []
    for path, member, value in component.signature.flatten(component):
        ports.append((path, member.flow, Value.cast(value)))
    return ports


def _path_name(path):
    return "__".join(str(p) for p in path)


class BoardTop(Elaboratable):
    """Board top level around ``component``.

    Parameters
    ----------
    component : wiring.Component
        The design under test.  Its ``sync`` domain is the board's clock.
    led : str
        Platform resource name of the LED showing the XOR of all outputs.
        ``None`` picks a board default (``"led"``, else ``"led_g"``/``"led_r"``).
    valid_led : bool
        Drive a second LED from the first output-stream ``valid`` found in
        the signature (if there is one and the board has a second LED).
    xor_fanin : int
        Output bits XORed per pipeline register of the reduction tree.

    Attributes
    ----------
    led : Signal(1)
        XOR of all design outputs, registered.
    led_valid : Signal(1)
        The first output-stream ``valid``, registered (0 if none).
    in_bits, out_bits : int
        Number of design input bits driven by the LFSR / output bits reduced.
    """

    def __init__(self, component, *, led=None, valid_led=True, xor_fanin=8):
        try:
            if xor_fanin < 2:
                raise ValueError(f"xor_fanin must be at least 2, not {xor_fanin}")
            self.ports = flatten_ports(component)
        except Exception:
            self._MustUse__silence = True   # never built: no UnusedElaboratable
            raise
        self.component  = component
        self.led_name   = led
        self.valid_led  = valid_led
        self.xor_fanin  = xor_fanin

        self.inputs  = [(p, v) for p, f, v in self.ports if f == Flow.In]
        self.outputs = [(p, v) for p, f, v in self.ports if f == Flow.Out]
        self.in_bits  = sum(len(v) for _, v in self.inputs)
        self.out_bits = sum(len(v) for _, v in self.outputs)
        self.valid_path = next((p for p, v in self.outputs
                                if p and p[-1] == "valid" and len(v) == 1), None)

        self.led       = Signal(name="led")
        self.led_valid = Signal(name="led_valid")

    # -- pieces ---------------------------------------------------------------

    def _stimulus(self, m):
        """LFSR + delay chain; returns a Value of ``in_bits`` registered bits."""
        lfsr = Signal(32, init=0xACE1_2468, name="lfsr")
        # Galois step: shift right, XOR the taps in when the dropped bit is 1.
        m.d.sync += lfsr.eq((lfsr >> 1) ^ (lfsr[0].replicate(32) & LFSR_TAPS))
        if self.in_bits == 0:
            return Const(0, 0)
        stages = [lfsr]
        nstages = -(-self.in_bits // 32)
        for k in range(1, nstages):
            # Rotate each stage a little so that neighbouring ports do not see
            # the same bit pattern merely shifted in time.
            stage = Signal(32, init=(0x9E37_79B9 * k) & 0xFFFF_FFFF, name=f"stim{k}")
            prev = stages[-1]
            m.d.sync += stage.eq(Cat(prev[7:], prev[:7]))
            stages.append(stage)
        # Stage 0 is the LFSR itself; its bits are flip-flop outputs as well.
        return Cat(*stages)[:self.in_bits]

    def _reduce(self, m, bits):
        """Pipelined XOR tree over ``bits``; returns a registered 1-bit signal."""
        level = 0
        while len(bits) > 1:
            groups = [bits[i:i + self.xor_fanin]
                      for i in range(0, len(bits), self.xor_fanin)]
            nxt = Signal(len(groups), name=f"xor_l{level}")
            m.d.sync += nxt.eq(Cat(*(g.xor() for g in groups)))
            bits, level = nxt, level + 1
        out = Signal(name="xor_out")
        if len(bits) == 1:
            m.d.sync += out.eq(bits)
        return out

    @staticmethod
    def _request_led(platform, names, number=0):
        for name in names:
            try:
                return platform.request(name, number, dir="-")
            except ResourceError:   # no such resource, or already requested
                continue
        return None

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.component

        stim = self._stimulus(m)
        offset = 0
        for path, value in self.inputs:
            m.d.comb += value.eq(stim[offset:offset + len(value)])
            offset += len(value)

        outs = Cat(*(v for _, v in self.outputs))
        m.d.comb += self.led.eq(self._reduce(m, outs))

        if self.valid_path is not None:
            valid = dict(self.outputs)[self.valid_path]
            m.d.sync += self.led_valid.eq(valid)

        if platform is not None:
            names = [self.led_name] if self.led_name else ["led", "led_g", "led_r"]
            led0 = self._request_led(platform, names, 0)
            if led0 is None:
                raise ValueError(f"platform {type(platform).__name__} has no LED "
                                 f"resource among {names}")
            m.submodules.led0_buf = led0_buf = io.Buffer("o", led0)
            m.d.comb += led0_buf.o.eq(self.led)
            if self.valid_led and self.valid_path is not None:
                led1 = self._request_led(platform, names, 1)
                if led1 is None and not self.led_name:
                    led1 = self._request_led(platform, ["led_r"], 0)
                if led1 is not None:
                    m.submodules.led1_buf = led1_buf = io.Buffer("o", led1)
                    m.d.comb += led1_buf.o.eq(self.led_valid)
        return m
