"""attnforge.rtl"""
