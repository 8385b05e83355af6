"""Host-side Python time of the Zynq transport's work per decode token, on this machine.

    python bench/zynq_host.py                      # the kv260 preset's decode token
    python bench/zynq_host.py --config tiny --repeat 50 --json

No board is needed and none is measured. The register window is a
:class:`DevMemRegisters` over a temporary file and the DDR buffer a
:class:`DevMemBuffer` over another (both ``mmap``s of page-cache memory), so every
register access is a plain 32-bit load or store and what is timed is the Python around
it: the transport's code, NumPy's element access, the copies. On the KV260 each
register access also crosses the AXI interconnect (a read waits for the fabric's answer)
and the Python runs on a Cortex-A53, several times slower than this machine's cores.
The stand-in window always offers ``tx_space`` = 512 (the FIFO depth) and a reply's
bytes 512 at a time, as a device that keeps up would.

For one decode token of ``--config`` (its inputs in: the token's embedding, ``hidden``
int32 values, with ``--embedding host``, one bus word with ``device``; its hidden state
out, ``hidden`` int32 values), the best of ``--repeat`` rounds (``time.perf_counter``)
of:

- the old path: ``send`` of every request frame of a run over the window (WRITE the
  inputs, SET position, SET tokens, RUN, GET cycles, READ the hidden state) and
  ``receive`` of every reply, one register access per byte;
- the new path: the one small frame of protocol version 2 (RUN with its tag, position
  and tokens; its 9-byte reply) over the window, and the inputs and the result through
  the buffer (``write_memory``, ``read_memory``): with the config's head on the device
  the argmax's word (``Accelerator.prefill_top(ids, 1)``), else the hidden state;
- each of those parts alone, and ``send`` of one small frame.

Nothing is asserted; docs/boards.md ("KV260", "Host time per token") has the figures.
"""

import argparse
import json
import os
import struct
import sys
import tempfile
import time

from tritium.host.link import encode_frame
from tritium.host.zynq_transport import DevMemBuffer, DevMemRegisters, ZynqTransport
from tritium.hw.config import ACCELERATOR_PRESETS
from tritium.hw.link import protocol as p
from tritium.hw.link import window_map as reg

FIFO_DEPTH = 512


class StandIn:
    """A ZynqTransport on a window and a buffer of temporary files."""

    def __init__(self, config, directory):
        window = os.path.join(directory, "window")
        with open(window, "wb") as file:
            file.truncate(reg.WINDOW_BYTES)
        memory = os.path.join(directory, "memory")
        self.memory_bytes = config.memory_words * config.memory.bytes_per_word
        with open(memory, "wb") as file:
            file.truncate(self.memory_bytes)                # sparse
        self.registers = DevMemRegisters(0, path=window)
        self.words = self.registers._words                  # the stand-in's side of it
        for name, value in (("magic", reg.WINDOW_MAGIC), ("version", reg.WINDOW_VERSION),
                            ("design", config.design_id), ("tx_space", FIFO_DEPTH),
                            ("rx_data", reg.RX_DATA_VALID | 0x55)):
            self.words[reg.REGISTERS[name] // 4] = value
        self.transport = ZynqTransport(config, self.registers, poll_interval=0)
        self.transport.attach_buffer(DevMemBuffer(0, self.memory_bytes, path=memory))

    def receive(self, length):
        """Receive a reply of ``length`` bytes, ``FIFO_DEPTH`` at a time."""
        while length:
            count = min(length, FIFO_DEPTH)
            self.words[reg.REGISTERS["rx_count"] // 4] = count
            self.transport.receive(0)
            length -= count

    def close(self):
        del self.words
        self.transport.close()


def frames(config, embedding, tokens=1):
    """The request frames and reply lengths of one run: ``(old, new, inputs, outputs,
    result)``, old (protocol version 1: the io region's WRITE, SET, SET, RUN, GET and
    the hidden states' READ) and new (version 2: RUN alone) each a list of ``(frame,
    reply bytes)``, inputs the bytes written to the io region (``embedding`` ``"host"``:
    the tokens' embeddings, ``hidden`` int32 each; ``"device"``: one word per token),
    outputs the hidden states' bytes, result what the new path reads back (the
    argmax's word with a device head, else the hidden states)."""
    word_bytes = config.data_width // 8
    outputs = tokens * config.model.hidden * 4
    size = outputs if embedding == "host" else tokens * word_bytes
    data = (bytes(range(256)) * (size // 256 + 1))[:size]
    chunk = (config.max_payload - 4) // word_bytes * word_bytes
    per_frame = config.max_payload // word_bytes

    def reply(length):                                      # frame and END, as the device sends
        return len(encode_frame(0x80, 1, bytes(length))) - 1

    small = [(encode_frame(p.SET, 1, struct.pack("<BI", 1, 100)), reply(0)),
             (encode_frame(p.SET, 2, struct.pack("<BI", 2, tokens)), reply(0)),
             (encode_frame(p.RUN, 3, bytes(1)), reply(1)),
             (encode_frame(p.GET, 4, bytes(1)), reply(4))]
    run = [(encode_frame(p.RUN, 3, struct.pack(p.RUN_SET_FORMAT, 1, 100, tokens)),
            reply(p.RUN_REPLY_BYTES))]
    writes = [(encode_frame(p.WRITE, 5, struct.pack("<I", start // word_bytes)
                            + data[start:start + chunk]), reply(0))
              for start in range(0, len(data), chunk)]
    words = outputs // word_bytes
    reads = [(encode_frame(p.READ, 6, struct.pack("<IH", start, min(per_frame, words - start))),
              reply(min(per_frame, words - start) * word_bytes))
             for start in range(0, words, per_frame)]
    result = word_bytes if config.head == "device" else outputs
    return writes + small + reads, run, data, outputs, result


def best(function, repeat):
    """The shortest of ``repeat`` calls' seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(config, embedding, repeat):
    old, new, data, outputs, result = frames(config, embedding)
    words = result // (config.data_width // 8)
    with tempfile.TemporaryDirectory() as directory:
        bench = StandIn(config, directory)
        transport = bench.transport
        address = config.memory_words - max(words, len(data) // (config.data_width // 8))

        def exchange(pairs):
            def run():
                for frame, reply in pairs:
                    transport.send(frame)
                    bench.receive(reply)
            return run

        def send(pairs):
            def run():
                for frame, _ in pairs:
                    transport.send(frame)
            return run

        def receive(pairs):
            def run():
                for _, reply in pairs:
                    bench.receive(reply)
            return run

        def bulk():
            transport.write_memory(address, data)
            transport.read_memory(address, words)

        def new_token():
            exchange(new)()
            bulk()

        figures = {
            "old_token": best(exchange(old), repeat),
            "new_token": best(new_token, repeat),
            "old_send": best(send(old), repeat),
            "old_receive": best(receive(old), repeat),
            "new_frames": best(exchange(new), repeat),
            "write_memory": best(lambda: transport.write_memory(address, data), repeat),
            "read_memory": best(lambda: transport.read_memory(address, words), repeat),
            "send_small_frame": best(send(new[:1]), repeat),
        }
        bench.close()
    bytes_old = (sum(len(frame) for frame, _ in old), sum(reply for _, reply in old))
    bytes_new = (sum(len(frame) for frame, _ in new), sum(reply for _, reply in new))
    return {"config": config.name, "embedding": embedding, "head": config.head,
            "input_bytes": len(data), "output_bytes": outputs, "result_bytes": result,
            "repeat": repeat,
            "old_window_bytes": {"to_device": bytes_old[0], "from_device": bytes_old[1]},
            "new_window_bytes": {"to_device": bytes_new[0], "from_device": bytes_new[1]},
            "small_frame_bytes": len(new[0][0]),
            "seconds": figures,
            "us_per_byte": {"send": figures["old_send"] / bytes_old[0] * 1e6,
                            "receive": figures["old_receive"] / bytes_old[1] * 1e6}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(ACCELERATOR_PRESETS), default="kv260")
    parser.add_argument("--embedding", choices=("host", "device"), default=None,
                        help="what a run writes to the io region: the embeddings (host) "
                             "or one word per token id (device); default: the config's")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    config = ACCELERATOR_PRESETS[args.config]
    embedding = args.embedding or getattr(config, "embedding", "host")
    result = measure(config, embedding, args.repeat)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return 0
    s, old, new = result["seconds"], result["old_window_bytes"], result["new_window_bytes"]
    print(f"{result['config']} ({result['embedding']} embedding, {result['head']} head): one "
          f"decode token, {result['input_bytes']} bytes in, {result['output_bytes']} out "
          f"(the old path), {result['result_bytes']} (the new); best of {result['repeat']}, "
          f"measured on this machine")
    print(f"  old: {old['to_device']} + {old['from_device']} window bytes      "
          f"{s['old_token'] * 1e3:8.3f} ms  (send {s['old_send'] * 1e3:.3f}, "
          f"receive {s['old_receive'] * 1e3:.3f})")
    print(f"  new: {new['to_device']} + {new['from_device']} window bytes + DDR  "
          f"{s['new_token'] * 1e3:8.3f} ms  (frames {s['new_frames'] * 1e3:.3f}, "
          f"write_memory {s['write_memory'] * 1e3:.3f}, read_memory "
          f"{s['read_memory'] * 1e3:.3f})")
    print(f"  per window byte: send {result['us_per_byte']['send']:.3f} us, receive "
          f"{result['us_per_byte']['receive']:.3f} us; one {result['small_frame_bytes']}-byte "
          f"frame sent in {s['send_small_frame'] * 1e6:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
