"""attnforge.gen"""
