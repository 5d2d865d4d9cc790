"""Register-stage helpers for pipelined datapaths (rtl/softmax.py, rtl/qk.py).

:func:`stage` registers a named bundle of values, optionally under a clock enable (the
pipeline's advance condition); :func:`tree` reduces a list pairwise with a register after
every level, carrying sideband values (valid, last, …) alongside; :func:`flag_copies` makes
one control flag in several flip-flops, to split a fan-out of thousands, and
:func:`enable_copies` does the same for a pipeline enable computed a cycle ahead, and
:func:`held_copies` for a register loaded now and then.
"""

from types import SimpleNamespace

from amaranth.hdl import Cat, Mux, Signal, Value
from amaranth.lib import data

__all__ = ["stage", "tree", "flag_copies", "enable_copies", "held_copies", "one_hot_mux"]


def stage(m, name, en=None, **values):
    """Register each of ``values`` (a Value, a View, or a list of them) as ``name_key``.

    With ``en``, the registers load only when it is high. Returns a namespace of the
    registers (lists stay lists).
    """
    def one(key, value):
        shape = value.shape() if isinstance(value, data.View) else Value.cast(value).shape()
        reg = Signal(shape, name=f"{name}_{key}")
        if en is None:
            m.d.sync += reg.eq(value)
        else:
            with m.If(en):
                m.d.sync += reg.eq(value)
        return reg
    out = {}
    for key, value in values.items():
        if isinstance(value, (list, tuple)):
            out[key] = [one(f"{key}{n}", v) for n, v in enumerate(value)]
        else:
            out[key] = one(key, value)
    return SimpleNamespace(**out)


def tree(m, name, items, combine, en=None, **meta):
    """Reduce ``items`` pairwise with ``combine``, a register (loaded when ``en``) after
    every level; an odd item passes to the next level unchanged.

    Items may be Values or tuples of Values (registered concatenated, split back with
    their signedness). ``meta`` travels alongside. Returns ``(result, meta, levels)``.
    """
    level = 0
    while len(items) > 1:
        items = [combine(items[n], items[n + 1]) if n + 1 < len(items) else items[n]
                 for n in range(0, len(items), 2)]
        regs = stage(m, f"{name}{level}", en, items=[Cat(*item) if isinstance(item, tuple) else item
                                                     for item in items], **meta)
        meta = {key: getattr(regs, key) for key in meta}
        items = [split(reg, item) for reg, item in zip(regs.items, items)]
        level += 1
    return items[0], meta, level


def split(reg, like):
    """Undo the ``Cat`` of a tuple ``like`` on ``reg``, keeping each part's signedness."""
    if not isinstance(like, tuple):
        return reg
    parts, at = [], 0
    for part in like:
        shape = Value.cast(part).shape()
        bits = reg[at:at + shape.width]
        parts.append(bits.as_signed() if shape.signed else bits)
        at += shape.width
    return tuple(parts)


def flag_copies(m, name, copies, *, set, clear):
    """``copies`` flip-flops that each hold one flag: set by ``set``, else cleared by ``clear``.

    Each copy's next value is chosen by its own output (``set | ~clear`` when high, ``set``
    when low), so synthesis cannot merge the copies, and each can drive its own share of a
    wide datapath's multiplexer selects. (Written as a set/clear/hold, the hold becomes a
    clock enable and Yosys merges the copies: qk's eight ``copying`` flags were one
    flip-flop of 1,061 loads.)
    """
    return enable_copies(m, name, copies, if_enabled=set | ~clear, if_stalled=set, init=0)


def enable_copies(m, name, copies, *, if_enabled, if_stalled, init=1):
    """``copies`` flip-flops that each hold a pipeline enable, computed a cycle ahead.

    ``if_enabled`` and ``if_stalled`` are the enable's value next cycle if the pipeline
    moves this cycle and if it does not. Each copy picks between them with its own output,
    so the copies cannot be merged by synthesis and each can drive the clock enables of its
    own share of the pipeline. All copies hold the same value; ``init`` is the enable's
    value after reset.
    """
    enables = [Signal(init=init, name=f"{name}{n}") for n in range(copies)]
    for en in enables:
        m.d.sync += en.eq(Mux(en, if_enabled, if_stalled))
    return enables


def held_copies(m, name, copies, *, load, value, init=0):
    """``copies`` flip-flops of one flag, each loaded with ``value`` when ``load``, else held.

    Written as :func:`enable_copies` (each copy chooses between two next values by its own
    output), not as a hold: synthesis turns a hold into a clock enable, after which copies
    with one ``load`` and one ``value`` are identical and merged.
    """
    return enable_copies(m, name, copies, if_enabled=Mux(load, value, 1),
                         if_stalled=Mux(load, value, 0), init=init)


def one_hot_mux(select, values):
    """``values[i]`` where ``select[i]`` is the one set bit: an OR of ANDs, no priority chain."""
    result = 0
    for bit, value in zip(select, values):
        result = result | Mux(bit, value, 0)
    return result
