"""Verilog emission and the JSON manifest that describes it.

Combinational processes are lowered to multiplexers (Yosys ``proc`` in full, where
Amaranth's own backend keeps ``always`` blocks), so the emitted file holds only continuous
assignments, clocked ``always`` blocks and memories. Two Icarus traps disappear with it:
plain ``always @*`` blocks rely on a start-up trick that never fires under ``-g2012`` (as
cocotb builds it) and leave X on outputs; and ``always_comb`` blocks, which Icarus makes
sensitive to whole vectors, re-trigger one another forever on the intermediate values
of a default-then-override assignment (seen as a simulation stuck at one time step).

The manifest is the single description every consumer reads: parameters, ports, and
for each stream the payload fields with their bit offsets and widths, so a testbench
packs and unpacks beats by field name.
"""

import json
import os
from pathlib import Path

from amaranth._toolchain.yosys import find_yosys  # pinned amaranth 0.5.10: its bundled Yosys
from amaranth.back import rtlil
from amaranth.hdl import Shape
from amaranth.lib import data, stream, wiring

__all__ = ["emit_verilog", "layout_fields", "stream_ports", "write_block"]


def emit_verilog(component, name, platform=None):
    """Elaborate ``component`` for ``platform`` to SystemVerilog text with top module ``name``."""
    text = rtlil.convert(component, name=name, emit_src=False, platform=platform)
    yosys = find_yosys(lambda version: version >= (0, 40))
    script = "\n".join([
        f"read_rtlil <<rtlil\n{text}\nrtlil",
        "proc",
        "opt_clean",
        "memory_collect",
        "attrmap -remove generator -remove top -remove src -remove amaranth.hierarchy -remove amaranth.decoding",
        "attrmap -modattr -remove generator -remove top -remove src -remove amaranth.hierarchy",
        "write_verilog -noattr",
    ])
    return yosys.run(["-q", "-"], script, ignore_warnings=True)


def layout_fields(layout):
    """Flatten a payload layout into ``{field: {offset, width, signed, count, stride}}``.

    Fields are scalars (``count`` 1) or one-dimensional arrays of scalars, where element
    ``i`` sits at ``offset + i * stride``; nested structs are flattened with dotted names.
    """
    if not isinstance(layout, data.Layout):
        shape = Shape.cast(layout)
        return {"": {"offset": 0, "width": shape.width, "signed": shape.signed, "count": 1,
                     "stride": shape.width}}
    fields = {}
    for name, field in layout:
        shape = field.shape
        if isinstance(shape, data.ArrayLayout):
            elem = Shape.cast(shape.elem_shape)
            fields[name] = {"offset": field.offset, "width": elem.width, "signed": elem.signed,
                            "count": shape.length, "stride": elem.width}
        elif isinstance(shape, data.StructLayout):
            for sub, info in layout_fields(shape).items():
                fields[f"{name}.{sub}"] = {**info, "offset": info["offset"] + field.offset}
        else:
            elem = Shape.cast(shape)
            fields[name] = {"offset": field.offset, "width": elem.width, "signed": elem.signed,
                            "count": 1, "stride": elem.width}
    return fields


def stream_ports(component):
    """``{port: {direction, width, fields}}`` for every stream member of the component."""
    ports = {}
    for name, member in component.signature.members.items():
        if member.is_signature and isinstance(member.signature, stream.Signature):
            payload = member.signature.members["payload"].shape
            ports[name] = {
                "direction": "out" if member.flow == wiring.Out else "in",
                "width": Shape.cast(payload).width,
                "fields": layout_fields(payload),
            }
    return ports


def _plain_ports(component):
    ports = {}
    for path, member, value in component.signature.flatten(component):
        ports["__".join(map(str, path))] = {
            "direction": "in" if member.flow == wiring.In else "out",
            "width": Shape.cast(member.shape).width,
        }
    return ports


def write_block(component, name, out_dir, parameters, extra=None, platform=None):
    """Write ``<name>.sv`` and ``<name>.json`` into ``out_dir``; return both paths.

    ``platform`` is what the component elaborates for (``None``: no platform; the
    testbenches pass :data:`attnforge.rtl.ram.CHECKED`).

    Both files are written to temporaries first, so a failure leaves nothing half-written.
    """
    out_dir = Path(out_dir)
    verilog = emit_verilog(component, name, platform)
    manifest = {
        "module": name,
        "parameters": dict(parameters),
        "ports": _plain_ports(component),
        "streams": stream_ports(component),
        **(extra or {}),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    sv_path, json_path = out_dir / f"{name}.sv", out_dir / f"{name}.json"
    for path, text in ((sv_path, verilog), (json_path, json.dumps(manifest, indent=2) + "\n")):
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return sv_path, json_path
