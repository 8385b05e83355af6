"""Tier 3: the real driver over the ``sim`` transport runs the tiny model end to end on
the generated Verilog (Verilator), logits equal to the golden model bit for bit."""

import numpy as np
import pytest

from tritium.host.accelerator import Accelerator
from tritium.host.importers import load_model
from tritium.host.sim_transport import SimTransport
from tritium.hw.config import ACCELERATOR_PRESETS
from tritium.sim.golden.model import GoldenModel

# Minutes of simulation (loading the model over the link, then ~40 runs): a long run.
pytestmark = [pytest.mark.cosim, pytest.mark.slow]

TINY = ACCELERATOR_PRESETS["tiny"]


def test_prefill_decode_and_a_second_prompt_match_golden():
    model = load_model("tiny")
    golden = GoldenModel(model)
    rng = np.random.default_rng(3)
    with Accelerator(TINY, SimTransport(TINY), timeout=600) as accelerator:
        accelerator.load(model)
        for length in (1, 7, 20):                     # 20 tokens: runs of 8, 8 and 4
            accelerator.reset()
            cache = golden.new_cache()
            ids = rng.integers(0, 256, length).tolist()
            assert np.array_equal(accelerator.prefill(ids), golden.forward(ids, cache)), length
        # Decode 32 tokens from the 20-token prompt, then a second prompt in the same
        # conversation.
        token = int(np.argmax(golden.forward([5], cache)[-1]))
        accelerator.decode(5)
        for step in range(32):
            got, want = accelerator.decode(token), golden.forward([token], cache)[-1]
            assert np.array_equal(got, want), f"decode step {step}"
            token = int(np.argmax(want))
        more = rng.integers(0, 256, 11).tolist()
        assert np.array_equal(accelerator.prefill(more), golden.forward(more, cache))
        counters = accelerator.counters()
        assert counters["runs"] > 0 and counters["cycles"] > 0
