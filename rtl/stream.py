"""Stream conventions shared by every block.

Every block boundary is an :mod:`amaranth.lib.stream` interface whose payload is a
:class:`~amaranth.lib.data.StructLayout`; a vector ends with a ``last`` field. Producers
hold ``valid`` and the payload until ``ready``. These helpers build the common layouts.
"""

from amaranth.lib import data

__all__ = ["vector_beat"]


def vector_beat(lanes, elem_shape, *, name="data", **extra):
    """A beat of ``lanes`` elements of a vector, with extra fields, ending in ``last``."""
    return data.StructLayout({
        name: data.ArrayLayout(elem_shape, lanes),
        **extra,
        "last": 1,
    })
