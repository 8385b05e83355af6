"""Where the int8 LM head sits in memory (docs/head.md): plain arithmetic that the
gateware (``hw/head/gemv.py``) and the host packer (``host/head_packer.py``) share.

This module is a contract: it imports nothing but the standard library, so the host
may use it without the gateware and the gateware without NumPy.

The head is a run of **blocks**. A block is one **mantissa word** (``block_rows``
16-bit mantissas, row ``j`` of the block in bits ``16 j .. 16 j + 15``; lanes past the
vocabulary are zero) followed by the codes of those ``block_rows`` rows, each row
``row_words`` whole words (``hidden`` int8 codes, two's complement, code ``j`` in byte
``j`` of the row counting from the lowest byte of its first word, padded with zero
codes to a whole word). The last block holds the rest of the vocabulary and may be
shorter. Words are ``data_width`` bits, addresses count words from the head's base.
"""

from dataclasses import dataclass

__all__ = ["HeadLayout", "MANTISSA_LANE_BITS", "head_layout_of"]

MANTISSA_LANE_BITS = 16         # an unsigned 16-bit mantissa per row (docs/numerics.md 10)


@dataclass(frozen=True)
class HeadLayout:
    """The memory layout of an int8 head of ``vocab`` rows by ``hidden`` codes in words
    of ``data_width`` bits (a multiple of 16)."""
    vocab: int
    hidden: int
    data_width: int

    def __post_init__(self):
        for name in ("vocab", "hidden", "data_width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"HeadLayout.{name} must be a positive integer, not {value!r}")
        if self.data_width % MANTISSA_LANE_BITS:
            raise ValueError(f"HeadLayout.data_width must be a multiple of "
                             f"{MANTISSA_LANE_BITS} bits, not {self.data_width}")

    @property
    def codes_per_word(self) -> int:
        """int8 codes in one word (its bytes)."""
        return self.data_width // 8

    @property
    def row_words(self) -> int:
        """Words of one row's codes, the last one padded with zero codes."""
        return -(-self.hidden // self.codes_per_word)

    @property
    def block_rows(self) -> int:
        """Rows per block: the mantissas one word holds."""
        return self.data_width // MANTISSA_LANE_BITS

    @property
    def block_words(self) -> int:
        """Words of a full block: its mantissa word and its rows' codes."""
        return 1 + self.block_rows * self.row_words

    @property
    def blocks(self) -> int:
        return -(-self.vocab // self.block_rows)

    @property
    def words(self) -> int:
        """Words of the whole head."""
        return self.blocks + self.vocab * self.row_words

    def rows_in_block(self, block: int) -> int:
        """Rows of block ``block``: ``block_rows`` but for a short last block."""
        self._check(block, self.blocks, "block")
        return min(self.block_rows, self.vocab - block * self.block_rows)

    def block_address(self, block: int) -> int:
        """Word address of block ``block`` (its mantissa word)."""
        self._check(block, self.blocks, "block")
        return block * self.block_words

    def mantissa_address(self, row: int) -> tuple:
        """``(word address, lane)`` of row ``row``'s mantissa: bits ``16 * lane ..``."""
        self._check(row, self.vocab, "row")
        return self.block_address(row // self.block_rows), row % self.block_rows

    def row_address(self, row: int) -> int:
        """Word address of the first word of row ``row``'s codes."""
        self._check(row, self.vocab, "row")
        block, lane = divmod(row, self.block_rows)
        return self.block_address(block) + 1 + lane * self.row_words

    @staticmethod
    def _check(value, count, name):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < count:
            raise ValueError(f"{name} must be an integer from 0 to {count - 1}, not {value!r}")


def head_layout_of(config) -> HeadLayout:
    """The head layout of an ``AcceleratorConfig``'s model in the words of the port the
    head unit reads through, the weight port (``config.weight_memory``: the bus
    word on a design without one): what a device head reads (the compiler places it,
    the unit and the software device read it, the performance model times it)."""
    return HeadLayout(config.model.vocab_size, config.model.hidden,
                      config.weight_memory.data_width)
