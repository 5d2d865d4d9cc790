"""The butterfly dataflow array: PEs computing FFT and butterfly-linear butterflies.

:mod:`.pe` holds the radix-2 butterfly PE (:class:`ButterflyPE`) with its stream payloads;
the array that streams stages and layers PE to PE builds on it.
"""

from .pe import ButterflyPE, Mode, complex_layout, pe_input_layout, pe_output_layout

__all__ = ["ButterflyPE", "Mode", "complex_layout", "pe_input_layout", "pe_output_layout"]
