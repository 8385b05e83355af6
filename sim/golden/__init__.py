"""tritium.sim.golden"""
