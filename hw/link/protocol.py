"""The host link protocol's numbers, shared by the gateware and the host (docs/link.md).

Plain Python only (no Amaranth), so ``host/`` imports them without gateware.

A frame on the wire is SLIP-escaped (RFC 1055) and ends with ``END``; unescaped it is

    type u8 | tag u8 | length u16 LE | payload (length bytes) | CRC-32 u32 LE

where the CRC is zlib's CRC-32 of everything before it. The host sends one frame and
waits for its reply (stop and wait); the reply has the same layout, ``type`` being the
command's with :data:`REPLY` set, or :data:`ERROR`, and the same ``tag``.
"""

import struct

END, ESC, ESC_END, ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD
HEADER_FORMAT = "<BBH"           # type, tag, length
HEADER_BYTES = struct.calcsize(HEADER_FORMAT)
ADDRESS_BYTES = 4                # the word address that starts WRITE and READ payloads
CRC_BYTES = 4
# CRC-32 register after the frame and its own CRC went through it (before the final
# inversion): a frame is intact exactly when the receiver ends with this value.
CRC_RESIDUE = 0xDEBB20E3
MAGIC = b"TRIT"
PROTOCOL_VERSION = 2              # 2: RUN sets position and tokens, replies runs, cycles

# Commands (host to device) and their payloads.
INFO = 0x01      # ()                      -> magic[4] version u16 max_payload u16
#                                             word_bytes u16 design u32 addr_width u8
WRITE = 0x02     # addr u32, words[n]      -> ()
READ = 0x03      # addr u32, count u16     -> words[count]
SET = 0x04       # register u8, value u32  -> ()
GET = 0x05       # register u8             -> value u32
RUN = 0x06       # argument u8 [position u32 tokens u16]
#                                          -> status u8 runs u32 cycles u32 (when the
#                                             controller finishes; with position and
#                                             tokens, the device sets both first)
COMMANDS = {"info": INFO, "write": WRITE, "read": READ, "set": SET, "get": GET, "run": RUN}

REPLY = 0x80     # reply type = command | REPLY
ERROR = 0xFF     # error reply: code u8, the rejected frame's type u8

# Error codes, in the order the device checks them.
ERR_ESCAPE = 1   # a SLIP escape not followed by ESC_END or ESC_ESC
ERR_LENGTH = 2   # shorter than a header and CRC, length field not the payload's
#                  size, or payload beyond max_payload
ERR_CRC = 3      # CRC-32 mismatch
ERR_COMMAND = 4  # unknown command type
ERR_ARGUMENT = 5  # payload of the wrong size for the command, address or register
#                   out of range, register not writable
ERRORS = {ERR_ESCAPE: "bad escape sequence", ERR_LENGTH: "bad length",
          ERR_CRC: "CRC mismatch", ERR_COMMAND: "unknown command",
          ERR_ARGUMENT: "bad argument"}

RUN_BYTES = 1                     # RUN's argument alone
RUN_SET_FORMAT = "<BIH"          # argument, position, tokens
RUN_SET_BYTES = struct.calcsize(RUN_SET_FORMAT)
RUN_REPLY_FORMAT = "<BII"        # status, the runs counter, the run's cycles
RUN_REPLY_BYTES = struct.calcsize(RUN_REPLY_FORMAT)

INFO_FORMAT = "<4sHHHIB"         # magic, version, max_payload, word bytes, design, addr width
INFO_BYTES = struct.calcsize(INFO_FORMAT)


def info_bytes(max_payload: int, word_bytes: int, design: int, addr_width: int) -> bytes:
    """The INFO reply's payload, as the gateware sends it and the host parses it."""
    return struct.pack(INFO_FORMAT, MAGIC, PROTOCOL_VERSION, max_payload, word_bytes, design,
                       addr_width)
