"""A software model of the whole accelerator at the byte level.

:class:`DeviceModel` takes the bytes a host sends over the link and returns the bytes
the device would answer: the same frames, checks and error codes as the gateware's
host link (``hw/link/receiver.py``, ``hw/link/commands.py``, docs/link.md), the
registers and programs of docs/program.md, and runs computed with the golden model's
functions (``sim/golden/model.py``). Everything a run uses comes from the memory
bytes the host wrote: instructions are fetched and decoded, weights unpacked and gains
read back, so a host that works against this model has exercised its compiled image.

Where the model is simpler than the hardware:

- The KV cache is a :class:`GoldenCache` beside the memory, not records in the memory
  bytes above ``kv_base``; the host never reads or writes that region anyway.
- The cycle counters stay 0; there are no cycles to count.
- An instruction whose memory or scratchpad range falls outside the memory or the
  scratchpad, or whose sizes do not match the design (a LINEAR with fewer columns
  than the codes it reads, an ATTEND of the wrong width, a layer beyond the cache, a
  HEAD of more entries than ``head_k`` or after a NORM of other than ``hidden``
  features), stops the run with ``BAD_OPCODE`` like an unknown opcode, since the status
  codes have no better name for it. Effects of the instructions before it remain. An
  opcode the design has no unit for (EMBED with host embedding, HEAD with a host head:
  ``isa.design_opcodes``) is unknown to it. With a weight queue
  (``config.weight_queue``) a LINEAR takes the matrix of the oldest PREFETCH not yet
  taken, as the hardware takes the queue's words; a LINEAR without one or of another
  matrix, or a run that ends with a PREFETCH not taken, is such a fault too (the
  hardware would wait for ever, compute with another matrix's words, or leave words in
  the queue for the next run).
- ``runs`` counts every RUN, including those refused with ``BAD_TOKENS``,
  ``BAD_STEPS`` or ``BAD_POSITION`` (which change nothing else).
"""

import mmap
import struct
import zlib

import numpy as np

from tritium.hw.config import AcceleratorConfig
from tritium.hw.control.isa import (FLAG_ACCUMULATE, FLAG_AT_STEP, FLAG_GATE, FLAG_NEXT,
                                    FLAG_ONE_TOKEN, INSTRUCTION_BYTES, OPCODES, REGISTER_RESET,
                                    REGISTERS, STATUS, WRITABLE_REGISTERS, design_opcodes,
                                    design_steps)
from tritium.hw.head_layout import head_layout_of
from tritium.hw.link import protocol as p
from tritium.sim.golden.head import QuantizedHead, head_scores, head_topk
from tritium.sim.golden.model import (GoldenCache, NormGain, QuantizedLinear, attention_step,
                                      ffn_activation, linear, norm_quant, rope_tables, saturate)
from .compiler import (decode_instruction, encode_top, instruction_words, unpack_rope_table,
                       unpack_scale)
from .errors import ModelFormatError
from .head_packer import unpack_head
from .link import FrameDecoder, LinkTimeout, encode_frame
from .packer import PackedTensor, unpack_ternary
from .transport import Transport

__all__ = ["DeviceModel", "DeviceModelTransport"]

class _Fault(Exception):
    """An instruction the device cannot execute: the run stops with BAD_OPCODE."""


class DeviceModel:
    """The accelerator of ``config`` as bytes in, bytes out.

    Attributes
    ----------
    memory : mmap.mmap
        ``memory_words * word_bytes`` bytes, zero at start. An anonymous map behaves
        like a ``bytearray`` but only costs the pages written, so the big designs'
        memories (512 MiB for ``kv260``) are cheap.
    registers : dict
        Register name -> value (docs/program.md).
    cache : GoldenCache
        The KV cache.
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        self.word_bytes = config.data_width // 8
        self.memory = mmap.mmap(-1, config.memory_words * self.word_bytes)
        self.registers = {name: REGISTER_RESET.get(name, 0) for name in REGISTERS}
        self.registers["design"] = config.design_id
        self._by_index = {index: name for name, index in REGISTERS.items()}
        self.cache = GoldenCache(config.model)
        self._rope = rope_tables(config.model)
        self._scratch = np.zeros((config.scratch_words, config.lanes), dtype=np.int64)
        self._codes = None                  # (codes, scale) of the last NORM
        self._decoder = FrameDecoder()
        self._info = p.info_bytes(config.max_payload, self.word_bytes, config.design_id,
                                  config.addr_width)

    # -- the link ---------------------------------------------------------------------

    def receive(self, data: bytes) -> bytes:
        """Take line bytes from the host; return the encoded replies they complete."""
        replies = []
        for raw, bad in self._decoder.feed(data):
            if raw:                          # the receiver ignores frames with no bytes
                replies.append(self._frame(raw, bad))
        return b"".join(replies)

    def _frame(self, raw: bytes, bad: bool) -> bytes:
        # Header bytes the frame did not carry read as 0, as in the receiver.
        header = (raw + bytes(p.HEADER_BYTES))[:p.HEADER_BYTES]
        kind, tag, length = struct.unpack(p.HEADER_FORMAT, header)
        body = raw[p.HEADER_BYTES:-p.CRC_BYTES]
        if bad:
            code = p.ERR_ESCAPE
        elif (len(raw) < p.HEADER_BYTES + p.CRC_BYTES or len(body) > self.config.max_payload
              or length != len(body)):
            code = p.ERR_LENGTH
        elif zlib.crc32(raw[:-p.CRC_BYTES]) != struct.unpack("<I", raw[-p.CRC_BYTES:])[0]:
            code = p.ERR_CRC
        else:
            code, reply = self._command(kind, body)
            if code == 0:
                return encode_frame(kind | p.REPLY, tag, reply)
        return encode_frame(p.ERROR, tag, bytes([code, kind]))

    def _command(self, kind: int, body: bytes):
        """``(0, reply payload)``, or ``(error code, None)``: the command unit's checks."""
        handlers = {p.INFO: self._info_command, p.WRITE: self._write, p.READ: self._read,
                    p.SET: self._set, p.GET: self._get, p.RUN: self._run_command}
        if kind not in handlers:
            return p.ERR_COMMAND, None
        reply = handlers[kind](body)
        return (p.ERR_ARGUMENT, None) if reply is None else (0, reply)

    def _in_memory(self, address: int, words: int) -> bool:
        return address < self.config.memory_words and address + words <= self.config.memory_words

    def _info_command(self, body):
        return self._info if len(body) == 0 else None

    def _write(self, body):
        words, partial = divmod(len(body) - p.ADDRESS_BYTES, self.word_bytes)
        if len(body) < p.ADDRESS_BYTES + self.word_bytes or partial:
            return None
        address = struct.unpack_from("<I", body)[0]
        if not self._in_memory(address, words):
            return None
        self.memory[address * self.word_bytes:(address + words) * self.word_bytes] = \
            body[p.ADDRESS_BYTES:]
        return b""

    def _read(self, body):
        if len(body) != 6:
            return None
        address, count = struct.unpack("<IH", body)
        if count == 0 or count > self.config.max_payload // self.word_bytes or \
                not self._in_memory(address, count):
            return None
        return self.memory[address * self.word_bytes:(address + count) * self.word_bytes]

    def _set(self, body):
        if len(body) != 5 or self._by_index.get(body[0]) not in WRITABLE_REGISTERS:
            return None
        self.registers[self._by_index[body[0]]] = struct.unpack_from("<I", body, 1)[0]
        return b""

    def _get(self, body):
        if len(body) != 1 or body[0] not in self._by_index:
            return None
        return struct.pack("<I", self.registers[self._by_index[body[0]]])

    def _run_command(self, body):
        # RUN's argument, or with the run's position and tokens, set before it runs.
        if len(body) == p.RUN_SET_BYTES:
            _, self.registers["position"], self.registers["tokens"] = \
                struct.unpack(p.RUN_SET_FORMAT, body)
        elif len(body) != p.RUN_BYTES:
            return None
        status = self.run(body[0])
        return struct.pack(p.RUN_REPLY_FORMAT, status, self.registers["runs"],
                           self.registers["cycles"])

    # -- the controller ---------------------------------------------------------------

    def run(self, argument: int = 0) -> int:
        """Run the program for ``tokens`` tokens at ``position``, ``steps`` times (step
        ``s`` at ``position + s``); return the status. The ``argument`` (the host's tag
        for the run) is kept in ``run_tag``."""
        tokens, position = self.registers["tokens"], self.registers["position"]
        steps = self.registers["steps"]
        self.registers["runs"] = (self.registers["runs"] + 1) & 0xFFFFFFFF
        self.registers["run_tag"] = argument
        if not 1 <= tokens <= self.config.max_tokens:
            status = STATUS["BAD_TOKENS"]
        elif not 1 <= steps <= design_steps(self.config) or steps > 1 and tokens != 1:
            status = STATUS["BAD_STEPS"]
        elif position + tokens + steps - 1 > self.config.attention.capacity:
            status = STATUS["BAD_POSITION"]
        else:
            try:
                for step in range(steps):
                    self._execute(position + step, tokens, step)
                status = STATUS["OK"]
            except _Fault:
                status = STATUS["BAD_OPCODE"]
        self.registers["status"] = status
        return status

    def _execute(self, position: int, tokens: int, step: int = 0):
        self._step = step
        step = instruction_words(self.word_bytes)
        pc = self.registers["program"]
        units = {"LOAD": self._load, "STORE": self._store, "NORM": self._norm,
                 "LINEAR": self._linear, "ATTEND": self._attend,
                 "EMBED": self._embed, "HEAD": self._head, "PREFETCH": self._prefetch}
        self._prefetched = []
        self._follow = None                 # a NORM of the next LINEAR's output
        operations = {OPCODES[name]: units[name] for name in design_opcodes(self.config)
                      if name in units}
        while True:
            fields = decode_instruction(self._memory_bytes(pc, INSTRUCTION_BYTES))
            if fields["opcode"] == OPCODES["END"]:
                if self._prefetched:
                    raise _Fault(f"{len(self._prefetched)} PREFETCH without its LINEAR")
                if self._follow:
                    raise _Fault("a NORM of the next LINEAR's output without its LINEAR")
                return
            if fields["opcode"] not in operations:
                raise _Fault(f"opcode {fields['opcode']} at word {pc}")
            if self._follow and fields["opcode"] not in (OPCODES["LINEAR"],
                                                         OPCODES["PREFETCH"]):
                raise _Fault(f"opcode {fields['opcode']} after a NORM of the next LINEAR")
            operations[fields["opcode"]](fields, position, tokens)
            pc += step

    def _memory_bytes(self, address: int, count: int) -> bytes:
        """``count`` bytes from word ``address``."""
        start = address * self.word_bytes
        if start + count > len(self.memory):
            raise _Fault(f"{count} bytes at word {address} are beyond the memory")
        return self.memory[start:start + count]

    def _rows(self, base: int, stride: int, beats: int, tokens: int):
        """Scratch beat indices of ``tokens`` vectors: an index array (tokens, beats)."""
        first = base + stride * np.arange(tokens)
        if first[-1] + beats > len(self._scratch):
            raise _Fault(f"scratch beats {base}.. (stride {stride}) are beyond the scratchpad")
        return first[:, None] + np.arange(beats)

    def _read_scratch(self, base, stride, beats, tokens) -> np.ndarray:
        """The vectors as (tokens, beats * lanes) int64."""
        return self._scratch[self._rows(base, stride, beats, tokens)].reshape(tokens, -1)

    def _write_scratch(self, base, stride, tokens, values):
        beats = values.shape[1] // self.config.lanes
        self._scratch[self._rows(base, stride, beats, tokens)] = \
            values.reshape(tokens, beats, self.config.lanes)

    def _load(self, f, position, tokens):
        count = tokens * f["beats"] * self.word_bytes
        # FLAG_AT_STEP: the step's input, where the step before stored its choice.
        address = f["address"] + (self._step if f["flags"] & FLAG_AT_STEP else 0)
        values = np.frombuffer(self._memory_bytes(address, count), dtype="<i4")
        self._write_scratch(f["dst"], f["dst_stride"], tokens,
                            values.astype(np.int64).reshape(tokens, -1))

    def _embed(self, f, position, tokens):
        # Token t's id is lane 0 of scratch beat S(t), modulo 2 ** id_bits as in the gateware.
        ids = self._read_scratch(f["src"], f["src_stride"], 1, tokens)[:, 0] \
            % (1 << self.config.id_bits)
        # A row is its beats' values, int32 or (a 16-bit table) int16, sign-extended.
        width = self.config.embedding_bits // 8
        row_bytes = f["beats"] * self.config.lanes * width
        row_words = row_bytes // self.word_bytes
        rows = [np.frombuffer(self._memory_bytes(f["address"] + int(i) * row_words, row_bytes),
                              dtype=f"<i{width}") for i in ids]
        self._write_scratch(f["dst"], f["dst_stride"], tokens,
                            np.stack(rows).astype(np.int64))

    def _store(self, f, position, tokens):
        # FLAG_ONE_TOKEN: the top-k, one vector whatever the run's tokens.
        count = 1 if f["flags"] & FLAG_ONE_TOKEN else tokens
        values = self._read_scratch(f["src"], f["src_stride"], f["beats"], count)
        # FLAG_AT_STEP: after the step's tokens, where the next step reads its input.
        address = f["address"] + (self._step + tokens if f["flags"] & FLAG_AT_STEP else 0)
        start = address * self.word_bytes
        data = values.astype("<i4").tobytes()
        if start + len(data) > len(self.memory):
            raise _Fault(f"STORE to word {address} is beyond the memory")
        self.memory[start:start + len(data)] = data

    def _norm(self, f, position, tokens):
        features = f["beats"] * self.config.lanes
        gains = np.frombuffer(self._memory_bytes(f["address"], 2 * features), dtype="<i2")
        # The gains' fractional bits are folded into the linears' output scales, so
        # norm_quant needs only their values.
        gain = NormGain(gains.astype(np.int64), 0)
        if f["flags"] & FLAG_NEXT:          # of the next LINEAR's output, as it is written
            self._follow = (f["beats"], gain, f["eps"])
            return
        x = self._read_scratch(f["src"], f["src_stride"], f["beats"], tokens)
        self._codes = norm_quant(x, gain, f["eps"])

    def _head(self, f, position, tokens):
        # The last token's codes against every row of the head in memory; the k best
        # (score descending, equal scores by row ascending) as k beats from dst.
        model = self.config.model
        if self._codes is None or self._codes[0].shape[1] != model.hidden:
            raise _Fault(f"HEAD needs the codes of a NORM of {model.hidden} features")
        if not 1 <= f["beats"] <= self.config.head_k:
            raise _Fault(f"HEAD of {f['beats']} entries; the design keeps 1 .. "
                         f"{self.config.head_k}")
        # The head's layout is in the words of the port it is read through.
        head_width = self.config.weight_memory.data_width
        codes, mantissas = unpack_head(
            self._memory_bytes(f["address"], head_layout_of(self.config).words * head_width // 8),
            model.vocab_size, model.hidden, head_width, self.config.head_weights)
        head = QuantizedHead(self.config.head_weights, codes, mantissas, 0)
        scores, rows = head_topk(head_scores(head, self._codes[0][tokens - 1:tokens]),
                                 f["beats"])
        entries = encode_top(rows[0], scores[0], self.config)
        self._write_scratch(f["dst"], f["dst_stride"], 1, entries.reshape(1, -1))

    def _prefetch(self, f, position, tokens):
        self._prefetched.append(_matrix_of(f))

    def _linear(self, f, position, tokens):
        tile = self.config.tlmm.tile
        beats = f["blocks"] * tile.rows // self.config.lanes       # of its output a token
        if f["flags"] & FLAG_ACCUMULATE and f["flags"] & FLAG_GATE:
            raise _Fault("LINEAR with both ACCUMULATE and GATE")
        if self._follow and self._follow[0] != beats:
            raise _Fault(f"a NORM of {self._follow[0]} beats before a LINEAR of {beats}")
        if self.config.weight_queue:
            if not self._prefetched:
                raise _Fault("LINEAR without a PREFETCH of its matrix")
            if self._prefetched.pop(0) != _matrix_of(f):
                raise _Fault("LINEAR of another matrix than the next PREFETCH's")
        if self._codes is None:
            raise _Fault("LINEAR before any NORM")
        codes, scale = self._codes
        rows, cols = f["blocks"] * tile.rows, f["beats"] * tile.k_per_word
        if codes.shape[1] > cols or len(codes) < tokens:
            raise _Fault(f"LINEAR of {cols} columns after a NORM of {codes.shape[1]} features")
        # Codes past the NORM's features are 0, like the weights' padding columns.
        codes = np.pad(codes[:tokens], ((0, 0), (0, cols - codes.shape[1])))
        words = f["blocks"] * f["beats"]
        data = self._memory_bytes(f["address"], -(-words * tile.word_bits // 8))
        try:
            weights = unpack_ternary(PackedTensor(data, (rows, cols), tile))
        except ModelFormatError as error:
            raise _Fault(str(error)) from None
        y = linear(codes, (scale[0][:tokens], scale[1][:tokens]),
                   QuantizedLinear(weights.astype(np.int64), unpack_scale(f["scale"])))
        if f["flags"] & FLAG_ACCUMULATE:
            y = saturate(self._read_scratch(f["dst"], f["dst_stride"], beats, tokens) + y)
        elif f["flags"] & FLAG_GATE:        # y is up; the gate vector is at src
            gate = self._read_scratch(f["src"], f["src_stride"], beats, tokens)
            y = ffn_activation(gate, y, self.config.model.activation)
        self._write_scratch(f["dst"], f["dst_stride"], tokens, y)
        if self._follow:                    # the NORM before norms what it wrote
            (_, gain, eps), self._follow = self._follow, None
            self._codes = norm_quant(y, gain, eps)

    def _rope_tables(self):
        """RoPE's tables: the ROM's, or with ``rope_table = "memory"`` the memory's bytes
        as the host wrote them (the hardware reads them there)."""
        config = self.config
        if config.rope_table != "memory":
            return self._rope
        start = config.rope_base * self.word_bytes
        data = self.memory[start:start + config.rope_words * self.word_bytes]
        return unpack_rope_table(data, config.model, config.lanes, config.data_width)

    def _attend(self, f, position, tokens):
        model = self.config.model
        qkv = self._read_scratch(f["src"], f["src_stride"], f["beats"], tokens)
        if qkv.shape[1] != model.q_dim + 2 * model.kv_dim or f["layer"] >= model.layers:
            raise _Fault(f"ATTEND of {qkv.shape[1]} features in layer {f['layer']}")
        heads = qkv[:, :model.q_dim].reshape(tokens, model.heads, model.head_dim)
        keys = qkv[:, model.q_dim:model.q_dim + model.kv_dim]
        values = qkv[:, model.q_dim + model.kv_dim:]
        out = attention_step(model, self._rope_tables(), self.cache, f["layer"],
                             np.arange(position, position + tokens), heads,
                             keys.reshape(tokens, model.kv_heads, model.head_dim),
                             values.reshape(tokens, model.kv_heads, model.head_dim),
                             unpack_scale(f["scale"]))
        self._write_scratch(f["dst"], f["dst_stride"], tokens, out.reshape(tokens, -1))


class DeviceModelTransport(Transport):
    """The software device: a :class:`DeviceModel` in the host process (transport
    ``model``); it answers as soon as bytes arrive. (Not the golden model: that is the
    host backend ``golden``, which speaks no link.)

    Attributes
    ----------
    device : DeviceModel
    """

    def __init__(self, config: AcceleratorConfig):
        self.device = DeviceModel(config)
        self._pending = b""

    def send(self, data: bytes) -> None:
        self._pending += self.device.receive(bytes(data))

    def receive(self, timeout: float) -> bytes:
        # The model replies synchronously in send(), so nothing can arrive by waiting.
        if not self._pending:
            raise LinkTimeout("the software device has no reply pending")
        data, self._pending = self._pending, b""
        return data


def _matrix_of(fields: dict) -> tuple:
    """The matrix a LINEAR or PREFETCH names: its address and shape."""
    return fields["address"], fields["beats"], fields["blocks"]
