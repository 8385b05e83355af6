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

Fixtures stay in the test files that use them, except the few below that several files
share (test data that must not be written twice).
"""

import json

import pytest

# -- fixtures shared by several files -----------------------------------------------------

# The config.json of 1bitLLM's bitnet_b1_58-large (BitNet-0.7B), as published.
BITNET_LARGE_HF_CONFIG = {
    "architectures": ["BitnetForCausalLM"], "hidden_act": "silu", "hidden_size": 1536,
    "intermediate_size": 4096, "max_position_embeddings": 2048,
    "num_attention_heads": 16, "num_hidden_layers": 24, "num_key_value_heads": 16,
    "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": False,
    "vocab_size": 32002}


@pytest.fixture
def bitnet_large_checkpoint():
    """``make(directory)``: a Hugging Face checkpoint directory holding only BitNet-0.7B's
    config.json (enough for what reads a model's shape); returns the directory."""
    def make(directory):
        directory.mkdir()
        (directory / "config.json").write_text(json.dumps(BITNET_LARGE_HF_CONFIG))
        return directory
    return make
