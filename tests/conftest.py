"""The test tiers. ``pytest`` runs them all, the cocotb simulations on Verilator
included; no vendor tool or system package is needed.

0. **Model.** Golden model against the float reference, the packer's round trips,
   config validation, importers, tokenizers, the host driver on the golden transport:
   ``tests/sim``, ``tests/host``, ``tests/test_packaging.py`` (the installed package).
1. **amaranth.sim unit tests.** Each component against the golden model, with random
   gaps on ``valid`` and back-pressure on ``ready``: ``tests/hw``.
2. **cocotb on the generated Verilog (Verilator).** Larger configs, mid-stream reset:
   ``tests/cosim`` (the ``tb_*.py`` files are the cocotb modules the ``test_*.py`` files
   build and run).
3. **The host driver end to end over the sim transport.** The real ``Accelerator``
   runs prefill and decode on the simulated top:
   ``tests/cosim/test_accelerator_sim.py``, ``tests/cosim/test_top_sim.py``
   (the link alone), ``tests/cosim/test_board_sim.py`` (a board memory model, loaded
   through the backdoor), and ``tests/boards/test_ulx3s_serial.py`` (the ``serial:``
   transport on the ULX3S core).
4. **Boards.** Elaboration, generated files, reports and the simulated KV260 top for
   every board: ``tests/boards``. Real toolchain builds are marked ``synth``.

Markers. They are registered in ``pyproject.toml`` (``[tool.pytest.ini_options]
markers``), which runs with ``--strict-markers``:

- ``cosim``: cocotb on generated Verilog (tiers 2 and 3, and the KV260 top's testbench);
- ``synth``: runs an FPGA toolchain (Yosys, nextpnr); left out by default;
- ``slow``: long randomized runs; left out by default.

``pytest`` runs ``-m "not synth and not slow"``. ``pytest -m synth`` runs the builds,
``pytest -m cosim`` the simulations only, and ``pytest -m "not cosim"`` skips them.
Timing is never asserted in a test; benchmarks live in ``bench/``.

Fixtures stay in the test files that use them: no fixture is shared between files.
"""
