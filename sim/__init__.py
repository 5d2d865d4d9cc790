"""attnforge.sim"""
