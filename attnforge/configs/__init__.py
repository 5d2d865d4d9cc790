"""One frozen Config per block, shared by its rtl, sim, tb and gen code."""
