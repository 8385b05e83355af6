"""Memory images for the simulated board memory's backdoor (``$readmemh`` files).

A :class:`~tritium.hw.memory.BoardMemory` with backdoor storage loads the file named by
``+tritium_memory_image=PATH`` when its ``load`` input is high at a clock edge; this
module writes such files, for the product's ``sim`` transport and the cocotb testbenches.
"""

import numpy as np

from tritium.hw.memory.board import BACKDOOR_PLUSARG

__all__ = ["write_memory_image", "image_plusarg"]


def image_plusarg(path) -> str:
    """The simulator argument that names the backdoor's image file."""
    return f"+{BACKDOOR_PLUSARG}={path}"


def write_memory_image(path, image, word_bytes: int) -> None:
    """Write ``image`` (``(word address, bytes)`` pairs, each zero-padded to whole words)
    as a ``$readmemh`` file: an ``@address`` line per region, then a word per line,
    most significant digit first."""
    width = 2 * word_bytes
    with open(path, "w") as file:
        for address, data in image:
            data = bytes(data) + bytes(-len(data) % word_bytes)
            words = np.frombuffer(data, dtype=np.uint8).reshape(-1, word_bytes)[:, ::-1]
            digits = words.tobytes().hex()
            file.write(f"@{address:x}\n")
            file.write("\n".join(digits[i:i + width] for i in range(0, len(digits), width)))
            file.write("\n")
