"""Tier 3: the host link's recovery against the generated top of the ``tiny`` accelerator
on Verilator (the ``sim`` transport): randomized faults both ways
(``sim/testing/faults.py``) while an :class:`Accelerator` prefills and decodes. Every
run that reports success has the logits of the same run without faults; every failure
is one line, within the bound of its deadlines (docs/link.md, "Recovery")."""

import random

import numpy as np
import pytest

from tritium.host.accelerator import Accelerator
from tritium.host.errors import TritiumError
from tritium.host.importers import load_model
from tritium.host.sim_transport import SimTransport
from tritium.hw.config import ACCELERATOR_PRESETS
from tritium.sim.testing.faults import FaultyTransport, watch_deadlines

pytestmark = pytest.mark.cosim

TINY = ACCELERATOR_PRESETS["tiny"]
FAULTS = 60
TIMEOUT = 3.0                   # WRITE, READ, RUN: a run of 4 tokens takes about 0.5 s
SHORT = 0.5                     # INFO, GET, SET


def test_random_faults_on_the_simulated_top_give_no_wrong_token():
    rng = random.Random(6)
    figures = {"faults": 0, "reported": 0, "failures": 0, "sessions": 0}
    with SimTransport(TINY) as sim:
        transport = FaultyTransport(sim, rng, rate=0.1, trickle=(0.2 * SHORT, 2 * SHORT))
        accelerator = Accelerator(TINY, transport, timeout=TIMEOUT)
        accelerator.link.short_timeout = SHORT
        watch_deadlines(accelerator.link, figures)
        transport.pause()
        accelerator.load(load_model("tiny"))
        while figures["faults"] < FAULTS:
            figures["sessions"] += 1
            steps = [("prefill", [rng.randrange(256) for _ in range(rng.randint(1, 4))]),
                     ("decode", rng.randrange(256)), ("decode", rng.randrange(256))]
            transport.pause()
            accelerator.reset()
            expected = [getattr(accelerator, step)(argument) for step, argument in steps]
            accelerator.reset()
            transport.resume()
            for (step, argument), logits_expected in zip(steps, expected):
                injected = len(transport.log)
                try:
                    logits = getattr(accelerator, step)(argument)
                except TritiumError as error:
                    assert str(error) and "\n" not in str(error), str(error)
                    figures["failures"] += 1
                    figures["reported"] += len(transport.log) - injected
                    figures.setdefault("messages", []).append(
                        (str(error), transport.log[injected:]))
                    break
                assert np.array_equal(logits, logits_expected), \
                    f"silently wrong logits after faults {transport.log[injected:]}"
            figures["faults"] = len(transport.log)
            # What a fault left on the line (a late reply, a trickle) must not reach the
            # next session's reference runs: wait it out.
            transport.pause()
            accelerator.link.get(0)
    print(figures)
    assert figures["reported"] < figures["faults"]
