"""The ``serial:`` transport through a real pseudo-terminal and pyserial, with the
software device model behind it; and its bad input: specs, missing and silent ports,
a board of another design."""

import dataclasses
import time

import numpy as np
import pytest

from tritium.host.accelerator import Accelerator, DesignMismatchError
from tritium.cli import main
from tritium.host.errors import InputError
from tritium.host.importers import load_model
from tritium.host.link import LinkTimeout
from tritium.host.serial_transport import DEFAULT_BAUD, parse_serial_spec
from tritium.host.device_model import DeviceModelTransport
from tritium.host.transports import open_transport
from tritium.hw.config import ACCELERATOR_PRESETS
from tritium.sim.golden.model import GoldenModel
from tritium.host.pty_bridge import PtyBridge
from tritium.sim.testing.faults import Silent

TINY = ACCELERATOR_PRESETS["tiny"]


@pytest.mark.parametrize("argument, expected", [
    ("/dev/ttyUSB0", ("/dev/ttyUSB0", DEFAULT_BAUD)),
    ("/dev/ttyUSB0@115200", ("/dev/ttyUSB0", 115200)),
    ("COM3@3000000", ("COM3", 3000000)),
])
def test_serial_specs(argument, expected):
    assert parse_serial_spec(argument) == expected


@pytest.mark.parametrize("argument, match", [
    (None, "needs a port"),
    ("", "needs a port"),
    ("@115200", "no port before"),
    ("/dev/ttyUSB0@fast", "positive integer, not 'fast'"),
    ("/dev/ttyUSB0@0", "positive integer, not '0'"),
])
def test_bad_serial_specs(argument, match):
    with pytest.raises(InputError, match=match):
        parse_serial_spec(argument)


def test_the_tiny_model_runs_over_a_serial_port():
    model = load_model("tiny")
    golden = GoldenModel(model)
    cache = golden.new_cache()
    with PtyBridge(DeviceModelTransport(TINY)) as bridge, \
            Accelerator(TINY, open_transport(f"serial:{bridge.port}@{DEFAULT_BAUD}", TINY)) as acc:
        acc.load(model)
        ids = [72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108]        # 11 tokens: 8 + 3
        assert np.array_equal(acc.prefill(ids), golden.forward(ids, cache))
        for token in (33, 10):
            assert np.array_equal(acc.decode(token), golden.forward([token], cache)[-1])
    assert bridge.failure is None


def test_a_missing_port_is_a_clear_error():
    with pytest.raises(InputError, match=r"cannot open serial port '/dev/tritium-none': no such port"):
        open_transport("serial:/dev/tritium-none", TINY)


def test_the_cli_names_a_missing_port(capsys):
    code = main(["run", "--model", "tiny", "--backend", "serial:/dev/tritium-none",
                 "--prompt", "Hi", "-n", "2"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "tritium: error: cannot open serial port '/dev/tritium-none': no such port"


def test_a_port_that_does_not_answer_times_out_with_its_name():
    with PtyBridge(Silent()) as bridge, \
            Accelerator(TINY, open_transport(f"serial:{bridge.port}", TINY), timeout=0.5) as acc:
        started = time.monotonic()
        with pytest.raises(LinkTimeout, match=f"no reply on serial port '{bridge.port}' "
                                               f"within 0.5 s"):
            acc.check_device()
        assert time.monotonic() - started < 5


def test_a_board_of_another_design_is_refused():
    other = dataclasses.replace(TINY, name="other", clock_hz=25_000_000)
    assert other.design_id != TINY.design_id
    with PtyBridge(DeviceModelTransport(other)) as bridge, \
            Accelerator(TINY, open_transport(f"serial:{bridge.port}", TINY)) as acc:
        with pytest.raises(DesignMismatchError, match="another configuration"):
            acc.load(load_model("tiny"))
