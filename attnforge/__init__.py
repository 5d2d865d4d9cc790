"""attnforge: verified sparse-attention accelerator hardware, generated from Amaranth."""

__version__ = "0.1.0"
