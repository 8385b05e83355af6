"""The simulation bridge cuts the host's bytes into frames the way the device's
``SlipDecoder`` does, so it waits for a reply exactly when the device sends one."""

import pytest

from tritium.hw.link.protocol import END, ESC, ESC_END, ESC_ESC
from tritium.sim.backend.bridge import _take_frame

E, X = bytes([END]), bytes([ESC])


@pytest.mark.parametrize("line, frame", [
    (b"A" + E, b"A" + E),                                     # a plain byte: a frame
    (E + E + b"AB" + E + b"C", E + E + b"AB" + E),            # leading ENDs ride along
    (X + E, None),                                            # a trailing ESC: no byte
    (X + b"x" + E, None),                                     # a bad escape pair: no byte
    (X + bytes([ESC_END]) + E, X + bytes([ESC_END]) + E),     # an escaped END: one byte
    (X + bytes([ESC_ESC]) + E, X + bytes([ESC_ESC]) + E),     # an escaped ESC: one byte
    (X + E + b"A" + E, X + E + b"A" + E),                     # ESC's pending state ends at END
])
def test_a_frame_is_one_that_decodes_to_a_byte(line, frame):
    pending = bytearray(line)
    assert _take_frame(pending) == frame
    if frame is not None:
        assert bytes(pending) == line[len(frame):]
