"""attnforge.tb"""
