"""The host link's recovery (docs/link.md, "Recovery"): deadlines, resynchronisation,
retries, RUN through the ``runs`` counter, replies checked before use, and randomized
fault injection (``sim/testing/faults.py``) against the software device through a real
:class:`Accelerator`: no silently wrong token, every failure one line within its bound."""

import random
import struct
import time

import numpy as np
import pytest

from tritium.cli import main
from tritium.cli.run import DEVICE_TIMEOUT
from tritium.host.accelerator import Accelerator
from tritium.host.device_model import DeviceModel, DeviceModelTransport
from tritium.host.errors import TritiumError
from tritium.host.importers import load_model
from tritium.host.link import (ATTEMPTS, FRAME_TIMEOUT, SHORT_TIMEOUT, DeviceError,
                               FrameDecoder, LinkClient, LinkError, LinkTimeout, encode_frame,
                               parse_frame)
from tritium.host.pty_bridge import PtyBridge
from tritium.host.transport import Transport
from tritium.hw.config import ACCELERATOR_PRESETS
from tritium.hw.control.isa import REGISTERS, STATUS
from tritium.hw.link import protocol as p
from tritium.sim.testing.faults import FAULTS, FaultyTransport, Silent, watch_deadlines

TINY = ACCELERATOR_PRESETS["tiny"]
SLACK = 5.0     # seconds of scheduling slack on a loaded machine: the bounds show that no
#                 request waits past its deadlines (a hang never ends), not how fast it fails


@pytest.fixture(scope="module")
def model():
    return load_model("tiny")


class Scripted(DeviceModelTransport):
    """The software device, with a hook that may rewrite each reply frame:
    ``edit(kind, tag, payload) -> bytes`` (the wire bytes to deliver instead)."""

    def __init__(self, config, edit=None):
        super().__init__(config)
        self.edit, self.sent = edit, []

    def send(self, data):
        for raw, bad in FrameDecoder().feed(data):
            if not bad and len(raw) >= 8:
                self.sent.append(raw[0])
        before = len(self._pending)
        super().send(data)
        if self.edit is not None and len(self._pending) > before:
            new, self._pending = self._pending[before:], self._pending[:before]
            for raw, _ in FrameDecoder().feed(new):
                self._pending += self.edit(*parse_frame(raw))


def reply(kind, tag, payload):
    return encode_frame(kind, tag, payload)[1:]        # the device sends no leading END


def client(transport, timeout=0.2, **options):
    return LinkClient(transport, timeout=timeout, **options)


# -- resynchronisation and retries -------------------------------------------------------

def test_stray_bytes_and_late_replies_are_discarded():
    device = Scripted(TINY)
    link = client(device)
    device._pending += b"\x17"                          # a stray byte on the line
    assert link.get(REGISTERS["design"]) == TINY.design_id
    device._pending += reply(p.GET | p.REPLY, link._tag, bytes(4))   # a late duplicate
    device._pending += b"\xc0\x01\x02\xc0"             # a damaged frame
    assert link.info().design == TINY.design_id
    assert link.get(REGISTERS["design"]) == TINY.design_id


def test_a_lost_write_reply_is_resent_and_not_reported():
    lost = []

    def edit(kind, tag, payload):
        if kind == p.WRITE | p.REPLY and not lost:
            lost.append(tag)
            return b""                                  # executed, reply lost
        return reply(kind, tag, payload)

    device = Scripted(TINY, edit)
    link = client(device)
    link.write(100, bytes(range(64)))
    assert lost and device.sent.count(p.WRITE) == 2 and link.recovered == 1
    assert link.read(100, 2) == bytes(range(64))


@pytest.mark.parametrize("code", [p.ERR_CRC, p.ERR_LENGTH, p.ERR_ESCAPE])
def test_a_damaged_request_is_resent(code):
    rejected = []

    def edit(kind, tag, payload):
        if kind == p.SET | p.REPLY and len(rejected) < ATTEMPTS - 1:
            rejected.append(tag)
            return reply(p.ERROR, tag, bytes([code, p.SET]))
        return reply(kind, tag, payload)

    device = Scripted(TINY, edit)
    client(device).set(REGISTERS["position"], 7)
    assert device.device.registers["position"] == 7 and device.sent.count(p.SET) == ATTEMPTS


def test_a_request_damaged_every_time_is_reported():
    device = Scripted(TINY, lambda kind, tag, payload: reply(p.ERROR, tag,
                                                             bytes([p.ERR_CRC, p.GET])))
    with pytest.raises(DeviceError, match=f"CRC mismatch \\(GET sent {ATTEMPTS} times\\)"):
        client(device).get(0)
    assert device.sent.count(p.GET) == ATTEMPTS


@pytest.mark.parametrize("call, match", [
    (lambda link: link.get(14), "0x05: bad argument$"),
    (lambda link: link.request(0x42), "0x42: unknown command$"),
])
def test_a_refused_command_is_reported_at_once(call, match):
    device = Scripted(TINY)
    with pytest.raises(DeviceError, match=match):
        call(client(device))
    assert len(device.sent) == 1


# -- RUN ----------------------------------------------------------------------------------

def test_a_lost_run_reply_is_recovered_from_the_run_tag():
    def edit(kind, tag, payload):
        return b"" if kind == p.RUN | p.REPLY else reply(kind, tag, payload)

    device = Scripted(TINY, edit)
    device.device.registers["tokens"] = 0               # a run the device refuses
    assert client(device, 0.05).run() == STATUS["BAD_TOKENS"]
    assert device.device.registers["runs"] == 1 and device.sent.count(p.RUN) == 1


def test_a_lost_run_frame_is_sent_again_once():
    dropped = []

    class Drop(Scripted):
        def send(self, data):
            if data[1] == p.RUN and not dropped:
                dropped.append(data)
                return
            super().send(data)

    device = Drop(TINY)
    device.device.registers["tokens"] = 0
    assert client(device, 0.05).run() == STATUS["BAD_TOKENS"]
    assert dropped and device.device.registers["runs"] == 1


def test_a_run_executed_twice_is_harmless_and_not_failed():
    """A duplicated RUN frame computes the same values into the same places: each RUN
    succeeds, though the device ran every frame twice; each RUN carries the next tag."""
    class Twice(Scripted):
        def send(self, data):
            super().send(data + data if data[1] == p.RUN else data)

    device = Twice(TINY)
    link = client(device, 0.05)
    assert link.run() == STATUS["BAD_TOKENS"] and link.run() == STATUS["BAD_TOKENS"]
    assert device.device.registers["runs"] == 4 and link.recovered == 0
    # The second RUN's answer is its first execution's: the third run.
    assert device.device.registers["run_tag"] == 2 and link.last_run.runs == 3


def test_a_lost_run_after_a_duplicated_one_is_sent_again():
    """The first RUN is duplicated (it runs twice, the second reply is stale) and the
    second RUN's frame is lost: the probe finds the first RUN's tag, so the second is
    sent again and runs once, never mistaken for the duplicate's run (a run counter
    taken from the first reply would have been one behind, and would have)."""
    sent = []

    class Faults(Scripted):
        def send(self, data):
            if data[1] == p.RUN:
                sent.append(data)
                if len(sent) == 1:
                    data = data + data                  # duplicated
                elif len(sent) == 2:
                    return                              # lost
            super().send(data)

    device = Faults(TINY)
    link = client(device, 0.05)
    assert link.run(position=0, tokens=0) == STATUS["BAD_TOKENS"]
    assert link.run(position=0, tokens=0) == STATUS["BAD_TOKENS"]
    assert len(sent) == 3 and device.device.registers["runs"] == 3
    assert link.recovered == 1 and link.last_run.runs == 3


def test_a_run_tag_of_another_host_is_reported():
    """This client's second RUN frame is lost while another host runs the device: the
    probe finds a tag that is neither this RUN's nor the last one's."""
    class Other(Scripted):
        runs_seen = 0

        def send(self, data):
            if data[1] == p.RUN:
                self.runs_seen += 1
                if self.runs_seen == 2:
                    self.device.run(77)             # another host's RUN; ours is lost
                    return
            super().send(data)

    link = client(Other(TINY), 0.05)
    assert link.run(position=0, tokens=0) == STATUS["BAD_TOKENS"]
    with pytest.raises(LinkError, match="run tag is 77, neither this RUN's \\(2\\) nor the "
                                        "last one's \\(1\\): another host"):
        link.run(position=0, tokens=0)


class Busy(Transport):
    """A device that, like the gateware, takes no frame while it runs: RUN's reply
    comes ``seconds`` after it, and every later frame is answered after that."""

    def __init__(self, seconds):
        self.device, self.seconds = DeviceModel(TINY), seconds
        self.replies, self.free_at = [], 0.0     # (time, bytes)

    def send(self, data):
        for raw, _ in FrameDecoder().feed(data):
            start = max(time.monotonic(), self.free_at)
            answer = self.device.receive(bytes([p.END]) + encode_frame_raw(raw))
            if raw[0] == p.RUN:
                start += self.seconds
                self.free_at = start
            self.replies.append((start, answer))

    def receive(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            ready = [answer for at, answer in self.replies if at <= now]
            if ready:
                self.replies = [(at, answer) for at, answer in self.replies if at > now]
                return b"".join(ready)
            if time.monotonic() >= deadline:
                raise LinkTimeout("busy")
            time.sleep(0.002)


def encode_frame_raw(raw):
    """``raw`` (an unescaped frame) back on the wire."""
    return raw.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + bytes([p.END])


def test_a_run_longer_than_the_probe_interval_waits_for_its_reply():
    device = Busy(0.4)
    device.device.registers["tokens"] = 0
    link = client(device, timeout=5.0, short_timeout=0.05)
    assert link.run() == STATUS["BAD_TOKENS"]
    assert device.device.registers["runs"] == 1


def test_a_run_that_never_ends_times_out_at_its_deadline():
    device = Busy(60)
    link = client(device, timeout=0.5, short_timeout=0.05)
    started = time.monotonic()
    with pytest.raises(LinkTimeout, match="no reply to RUN within 0.5 s"):
        link.run()
    assert time.monotonic() - started < 0.5 + SLACK


# -- deadlines ------------------------------------------------------------------------------

class Trickle(Transport):
    """Answers every request with a byte every few milliseconds and never an END."""

    def send(self, data):
        pass

    def receive(self, timeout):
        time.sleep(min(timeout, 0.005))
        return b"\x55"


def test_a_trickle_without_frame_end_times_out_at_the_deadline():
    link = client(Trickle(), timeout=0.1)
    started = time.monotonic()
    with pytest.raises(LinkTimeout, match=f"bytes arrived but no complete frame within 0.1 s "
                                          f"\\(READ sent {ATTEMPTS} times\\)"):
        link.request(p.READ, struct.pack("<IH", 0, 1))
    assert time.monotonic() - started < ATTEMPTS * 0.1 + SLACK


def test_the_first_contact_uses_the_short_timeout():
    link = LinkClient(Silent(), timeout=DEVICE_TIMEOUT, short_timeout=0.1)
    started = time.monotonic()
    with pytest.raises(LinkTimeout, match=f"^silent \\(INFO sent {ATTEMPTS} times\\)$"):
        link.info()
    assert time.monotonic() - started < ATTEMPTS * 0.1 + SLACK
    assert LinkClient(Silent(), DEVICE_TIMEOUT).timeout_of(p.INFO) == SHORT_TIMEOUT


def test_only_run_waits_the_clients_long_timeout():
    """A lost WRITE or READ reply is retried after FRAME_TIMEOUT, not after the 600 s a
    long simulated RUN may need; no deadline exceeds the client's own."""
    link = LinkClient(Silent(), DEVICE_TIMEOUT)
    assert [link.timeout_of(kind) for kind in (p.INFO, p.GET, p.SET, p.WRITE, p.READ, p.RUN)] \
        == [SHORT_TIMEOUT] * 3 + [FRAME_TIMEOUT] * 2 + [DEVICE_TIMEOUT]
    quick = LinkClient(Silent(), timeout=1.0)
    assert max(quick.timeout_of(kind) for kind in (p.INFO, p.WRITE, p.RUN)) == 1.0
    link = LinkClient(Silent(), timeout=DEVICE_TIMEOUT, frame_timeout=0.1)
    started = time.monotonic()
    with pytest.raises(LinkTimeout, match=f"^silent \\(READ sent {ATTEMPTS} times\\)$"):
        link.request(p.READ, struct.pack("<IH", 0, 1))
    assert time.monotonic() - started < ATTEMPTS * 0.1 + SLACK


def test_the_cli_reports_a_silent_serial_port_in_seconds(capsys):
    with PtyBridge(Silent()) as bridge:
        started = time.monotonic()
        code = main(["run", "--model", "tiny", "--backend", f"serial:{bridge.port}",
                     "--prompt", "Hi", "-n", "2"])
        elapsed = time.monotonic() - started
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"tritium: error: no reply on serial port '{bridge.port}' "
                              f"within {SHORT_TIMEOUT:g} s")
    assert elapsed < ATTEMPTS * SHORT_TIMEOUT + 5          # not DEVICE_TIMEOUT


# -- replies checked before use ---------------------------------------------------------

def _short(kind, tag, payload):
    return reply(kind, tag, payload[:-1] if payload else b"\x00")


@pytest.mark.parametrize("command, call, match", [
    (p.INFO, lambda link: link.info(), "INFO reply carries 14 payload bytes, not 15"),
    (p.READ, lambda link: link.read(0, 2), "READ reply carries 63 payload bytes, not 64"),
    (p.GET, lambda link: link.get(0), "GET reply carries 3 payload bytes, not 4"),
    (p.SET, lambda link: link.set(0, 1), "SET reply carries 1 payload bytes, not 0"),
    (p.WRITE, lambda link: link.write(0, bytes(32)), "WRITE reply carries 1 payload bytes, not 0"),
    (p.RUN, lambda link: link.run(), "RUN reply carries 8 payload bytes, not 9"),
    (p.ERROR, lambda link: link.get(14), "error reply to GET carries 1 payload bytes, not 2"),
])
def test_a_reply_of_the_wrong_length_is_a_one_line_link_error(command, call, match):
    def edit(kind, tag, payload):
        if kind in (command | p.REPLY, command):
            return _short(kind, tag, payload)
        return reply(kind, tag, payload)

    with pytest.raises(LinkError, match=match) as error:
        call(client(Scripted(TINY, edit)))
    assert "\n" not in str(error.value) and type(error.value) is LinkError


def test_a_reply_of_another_type_is_a_link_error():
    link = client(Scripted(TINY, lambda kind, tag, payload: reply(p.READ | p.REPLY, tag, b"")))
    with pytest.raises(LinkError, match="command GET got a reply of type 0x83"):
        link.get(0)


def test_a_device_that_is_not_tritium_is_refused():
    link = client(Scripted(TINY, lambda kind, tag, payload: reply(kind, tag, b"XXXX" + payload[4:])))
    with pytest.raises(LinkError, match="INFO began with b'XXXX'"):
        link.info()


# -- randomized faults against the software device ---------------------------------------

DEADLINE = 0.05                 # seconds: the software device answers at once


@pytest.fixture(scope="module")
def reference(model):
    """The accelerator on a software device without faults: the logits every faulty
    session must reproduce (test_accelerator.py holds them equal to the golden model's)."""
    accelerator = Accelerator(TINY, DeviceModelTransport(TINY))
    accelerator.load(model)
    return accelerator


def soak(model, reference, faults: int, seed: int, rate: float = 0.03):
    """Sessions of load, prefill, decode and a step on the device head (``prefill_top``,
    which switches programs) on a fresh software device behind a
    :class:`FaultyTransport`, until ``faults`` faults were injected. Every run that
    reports success must have the logits (or top-k) of the same run without faults;
    every failure must be one line, reported within the bound of the request that
    failed."""
    rng = random.Random(seed)
    figures = {"faults": 0, "recovered": 0, "reported": 0, "sessions": 0, "operations": 0,
               "failures": 0, "max_report_seconds": 0.0, "max_request_seconds": 0.0,
               "kinds": {}, "messages": {}}
    while figures["faults"] < faults:
        transport = FaultyTransport(DeviceModelTransport(TINY), rng, rate=rate,
                                    trickle=(0.2 * DEADLINE, 2 * DEADLINE))
        accelerator = Accelerator(TINY, transport, timeout=DEADLINE)
        watch_deadlines(accelerator.link, figures, SLACK)
        steps = [("load", None), ("prefill", [rng.randrange(256) for _ in range(rng.randint(1, 12))])]
        steps += [("decode", rng.randrange(256)) for _ in range(2)]
        steps += [("prefill_top", [rng.randrange(256) for _ in range(rng.randint(1, 10))])]
        reference.reset()
        expected = [None] + [getattr(reference, step)(argument) for step, argument in steps[1:]]
        for (step, argument), logits_expected in zip(steps, expected):
            injected = len(transport.log)
            figures["operations"] += 1
            try:
                if step == "load":
                    accelerator.load(model)
                    continue
                result = getattr(accelerator, step)(argument)
            except TritiumError as error:
                message = str(error)
                assert message and "\n" not in message, message
                figures["reported"] += len(transport.log) - injected
                figures["failures"] += 1
                key = message.split(" (")[0][:60]
                figures["messages"][key] = figures["messages"].get(key, 0) + 1
                break
            else:
                same = (all(map(np.array_equal, result, logits_expected))
                        if step == "prefill_top" else np.array_equal(result, logits_expected))
                assert same, f"silently wrong {step} after faults {transport.log[injected:]}"
        figures["faults"] += len(transport.log)
        figures["sessions"] += 1
        for _, kind in transport.log:
            figures["kinds"][kind] = figures["kinds"].get(kind, 0) + 1
    figures["recovered"] = figures["faults"] - figures["reported"]
    return figures


def test_a_thousand_random_faults_give_no_wrong_token(model, reference):
    figures = soak(model, reference, 1000, seed=15)
    print(figures)
    assert figures["faults"] >= 1000 and set(figures["kinds"]) == set(FAULTS)
    assert figures["recovered"] > figures["reported"]


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_a_long_soak_of_random_faults(model, reference, seed):
    figures = soak(model, reference, 5000, seed=100 + seed, rate=0.06)
    print(figures)
