"""tritium.sim"""
