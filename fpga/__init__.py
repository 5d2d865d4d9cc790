"""attnforge.fpga"""
