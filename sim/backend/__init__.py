"""The simulated accelerator that the product runs (``tritium demo``, ``--backend sim``,
the full-size benches): the Verilator/cocotb runner, the simulated tops, the bridge to
the host link and the board memory's backdoor."""
