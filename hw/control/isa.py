"""The controller's instruction set, registers and status codes (docs/program.md).

Plain constants only (no Amaranth), so the host compiler and the gateware controller
share one definition of every number: the host compiles programs with them, the
controller decodes them.
"""

from ..numerics import EXPONENT_BITS, MANTISSA_BITS

__all__ = ["INSTRUCTION_BYTES", "FIELDS", "OPCODES", "OPCODE_BITS", "FLAG_ACCUMULATE",
           "FLAG_ONE_TOKEN", "FLAG_GATE", "FLAG_NEXT", "FLAG_AT_STEP", "SCALE_MANTISSA_BITS",
           "SCALE_EXPONENT_BITS", "REGISTERS", "WRITABLE_REGISTERS", "REGISTER_RESET",
           "STATUS", "MAX_STEPS", "design_opcodes", "design_steps", "TOP_ENTRY_LANES"]

INSTRUCTION_BYTES = 32

# (name, byte offset, struct format), little endian; the bytes not covered (3, 28 to 31)
# are zero. (28 and 29 were ``aux``, the up vector of the retired GATE.)
FIELDS = (
    ("opcode", 0, "B"),
    ("flags", 1, "B"),
    ("layer", 2, "B"),
    ("address", 4, "I"),         # a memory word address
    ("src", 8, "H"),             # scratch beat addresses and strides from here on
    ("dst", 10, "H"),
    ("src_stride", 12, "H"),
    ("dst_stride", 14, "H"),
    ("beats", 16, "H"),
    ("blocks", 18, "H"),
    ("scale", 20, "I"),          # mantissa u16 in bits 0-15, exponent s10 in bits 16-25
    ("eps", 24, "I"),
)

# 5 was GATE, retired: the FFN gating is a LINEAR's (FLAG_GATE), and a 5 now ends a run
# with BAD_OPCODE like any other unassigned value (docs/program.md).
OPCODES = {"END": 0, "LOAD": 1, "STORE": 2, "NORM": 3, "LINEAR": 4, "ATTEND": 6,
           "EMBED": 7, "HEAD": 8, "PREFETCH": 9}
# Bits the executing opcode is held in. The instruction's field is a byte, but the
# sequencer turns any other value into END (BAD_OPCODE), so the datapath's decode of an
# opcode is one 4-input compare rather than an 8-input one.
OPCODE_BITS = max(OPCODES.values()).bit_length()

FLAG_ACCUMULATE = 0x01           # LINEAR adds its output to the destination (saturating)
FLAG_ONE_TOKEN = 0x02            # STORE moves one vector (the top-k), not one per token
# LINEAR's output is the FFN's `up`: it writes ffn_activation(gate, up) with the gate
# vector read from src (the FFN gating fused into the LINEAR: docs/program.md). Not with
# ACCUMULATE.
FLAG_GATE = 0x04
# NORM of the next LINEAR's output (PREFETCHes may come between): its gains are read
# once, then its values are the beats that LINEAR writes, normed as they are written
# (NORM fused into the LINEAR before it: docs/program.md).
FLAG_NEXT = 0x08
# LOAD from ``address + step``, STORE to ``address + step + tokens`` (words): in a run of
# several steps (the ``steps`` register) each step reads its input token id where the
# step before stored its choice (docs/program.md, "Steps").
FLAG_AT_STEP = 0x10

# A HEAD writes each top-k entry as one scratchpad beat: lane 0 the row (token id),
# lanes 1 and 2 the 48-bit score's low 32 bits and its high bits sign-extended.
TOP_ENTRY_LANES = 3

# An instruction's scale field holds a scale of docs/numerics.md: mantissa and signed exponent.
SCALE_MANTISSA_BITS = MANTISSA_BITS
SCALE_EXPONENT_BITS = EXPONENT_BITS

REGISTERS = {
    "position": 0, "tokens": 1, "program": 2,
    "status": 3, "cycles": 4, "fetch_cycles": 5, "move_cycles": 6, "norm_cycles": 7,
    "linear_cycles": 8, "attend_cycles": 10, "runs": 11, "head_cycles": 12, "steps": 13,
    "run_tag": 15,
    "design": 16,
    "fetch_words": 17, "move_words": 18, "norm_words": 19, "linear_words": 20,
    "attend_words": 21, "head_words": 22,
}
WRITABLE_REGISTERS = ("position", "tokens", "program", "steps")
#: The writable registers' values after reset (the others' are 0).
REGISTER_RESET = {"steps": 1}

STATUS = {"OK": 0, "BAD_TOKENS": 1, "BAD_POSITION": 2, "BAD_OPCODE": 3, "BAD_STEPS": 4}

#: The most steps a run makes on a design that chooses its own tokens (design_steps).
MAX_STEPS = 64


def design_opcodes(config) -> tuple:
    """The opcodes a design of ``config`` (an ``AcceleratorConfig``) executes: EMBED only
    with the embedding table on the device, HEAD only with the LM head there, PREFETCH
    only with a weight queue (``config.weight_queue``); any other
    opcode ends a run with BAD_OPCODE."""
    absent = {"EMBED": config.embedding != "device", "HEAD": config.head != "device",
              "PREFETCH": not config.weight_queue}
    return tuple(name for name in OPCODES if not absent.get(name, False))


def design_steps(config) -> int:
    """The most ``steps`` a run of a design of ``config`` makes: :data:`MAX_STEPS` where
    the device both looks up embeddings (EMBED) and scores the head (HEAD), so that a
    step's input can be the choice of the step before; else 1."""
    return MAX_STEPS if config.embedding == "device" and config.head == "device" else 1
