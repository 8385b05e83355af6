"""Where the LM head sits in memory (docs/head.md): plain arithmetic that the gateware
(``hw/head/gemv.py``) and the host packer (``host/head_packer.py``) share.

This module is a contract: it imports nothing but the standard library, so the host
may use it without the gateware and the gateware without NumPy.

The head is a run of **blocks**. A block is ``mantissa_words`` **mantissa words**
(``block_rows * groups`` 16-bit mantissas: row ``r`` of the block, group ``g`` in lane
``r * groups + g``, lane ``l`` in bits ``16 (l % lanes) ..`` of the block's mantissa word
``l // lanes``; lanes past the vocabulary are zero) followed by the codes of those
``block_rows`` rows, each row ``row_words`` whole words (``hidden`` codes of
``code_bits`` bits, two's complement, code ``j`` in bits ``code_bits * j ..`` of the row
counting from the lowest bit of its first word, padded with zero codes to a whole word).
The int8 format has one group per row (``group = hidden``) and ``block_rows`` rows of
one mantissa word; the int4 format a mantissa per ``group`` hidden dims. The last block
holds the rest of the vocabulary and may be shorter (its mantissa words are whole).
Words are ``data_width`` bits, addresses count words from the head's base.
"""

from dataclasses import dataclass
from math import gcd

__all__ = ["HeadLayout", "MANTISSA_LANE_BITS", "CODE_BITS", "head_layout_of",
           "head_layout_for"]

MANTISSA_LANE_BITS = 16         # an unsigned 16-bit mantissa per scale (docs/numerics.md 10)
CODE_BITS = {"int8": 8, "int4": 4}      # a weight code's bits, per head format


@dataclass(frozen=True)
class HeadLayout:
    """The memory layout of a head of ``vocab`` rows by ``hidden`` codes of ``code_bits``
    bits (8 or 4), one mantissa per ``group`` consecutive codes of a row (``None``: one
    per row), in words of ``data_width`` bits (a multiple of 16).

    A group either spans whole words (``group`` a multiple of :attr:`codes_per_word`) or
    divides a word (:attr:`codes_per_word` a multiple of ``group``), so every word's
    codes meet :attr:`word_groups` mantissas; one group per row may end in a padded
    word."""
    vocab: int
    hidden: int
    data_width: int
    code_bits: int = 8
    group: int = None

    def __post_init__(self):
        if self.group is None:
            object.__setattr__(self, "group", self.hidden)
        for name in ("vocab", "hidden", "data_width", "group"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"HeadLayout.{name} must be a positive integer, not {value!r}")
        if self.code_bits not in CODE_BITS.values():
            raise ValueError(f"HeadLayout.code_bits must be 8 or 4, not {self.code_bits!r}")
        if self.data_width % MANTISSA_LANE_BITS:
            raise ValueError(f"HeadLayout.data_width must be a multiple of "
                             f"{MANTISSA_LANE_BITS} bits, not {self.data_width}")
        if self.hidden % self.group:
            raise ValueError(f"the head's group ({self.group}) must divide its hidden size "
                             f"({self.hidden})")
        per_word = self.codes_per_word
        if self.groups > 1 and self.group % per_word and per_word % self.group:
            raise ValueError(f"a group of {self.group} codes neither divides nor spans whole "
                             f"words of {per_word} codes ({self.data_width}-bit words)")

    @property
    def codes_per_word(self) -> int:
        """Weight codes in one word."""
        return self.data_width // self.code_bits

    @property
    def row_words(self) -> int:
        """Words of one row's codes, the last one padded with zero codes."""
        return -(-self.hidden // self.codes_per_word)

    @property
    def groups(self) -> int:
        """Mantissas per row."""
        return self.hidden // self.group

    @property
    def word_groups(self) -> int:
        """Groups (so mantissas) one code word meets: 1 if a group spans whole words."""
        return max(1, self.codes_per_word // self.group)

    @property
    def group_words(self) -> int:
        """Code words of one group: the row's words for one group per row."""
        return self.row_words if self.groups == 1 else max(1, self.group // self.codes_per_word)

    @property
    def lanes(self) -> int:
        """Mantissas in one word."""
        return self.data_width // MANTISSA_LANE_BITS

    @property
    def block_rows(self) -> int:
        """Rows per block: the fewest whose mantissas fill whole words (one word's worth
        for the int8 format)."""
        return self.lanes // gcd(self.lanes, self.groups)

    @property
    def mantissa_words(self) -> int:
        """Mantissa words at the head of a block."""
        return self.block_rows * self.groups // self.lanes

    @property
    def block_words(self) -> int:
        """Words of a full block: its mantissa words and its rows' codes."""
        return self.mantissa_words + self.block_rows * self.row_words

    @property
    def blocks(self) -> int:
        return -(-self.vocab // self.block_rows)

    @property
    def words(self) -> int:
        """Words of the whole head."""
        return self.blocks * self.mantissa_words + self.vocab * self.row_words

    def rows_in_block(self, block: int) -> int:
        """Rows of block ``block``: ``block_rows`` but for a short last block."""
        self._check(block, self.blocks, "block")
        return min(self.block_rows, self.vocab - block * self.block_rows)

    def block_address(self, block: int) -> int:
        """Word address of block ``block`` (its first mantissa word)."""
        self._check(block, self.blocks, "block")
        return block * self.block_words

    def mantissa_address(self, row: int, group: int = 0) -> tuple:
        """``(word address, lane)`` of row ``row``'s mantissa of group ``group``: bits
        ``16 * lane ..`` of that word."""
        self._check(row, self.vocab, "row")
        self._check(group, self.groups, "group")
        block, lane = divmod(row, self.block_rows)
        word, lane = divmod(lane * self.groups + group, self.lanes)
        return self.block_address(block) + word, lane

    def row_address(self, row: int) -> int:
        """Word address of the first word of row ``row``'s codes."""
        self._check(row, self.vocab, "row")
        block, lane = divmod(row, self.block_rows)
        return self.block_address(block) + self.mantissa_words + lane * self.row_words

    @staticmethod
    def _check(value, count, name):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < count:
            raise ValueError(f"{name} must be an integer from 0 to {count - 1}, not {value!r}")


def head_layout_for(vocab: int, hidden: int, data_width: int, head) -> HeadLayout:
    """The layout of a head of format ``head`` (a :class:`~tritium.hw.config.HeadConfig`:
    ``format``, and for int4 ``group``) in words of ``data_width`` bits."""
    if head.format not in CODE_BITS:
        raise ValueError(f"unknown head format {head.format!r}")
    return HeadLayout(vocab, hidden, data_width, CODE_BITS[head.format],
                      head.group if head.format == "int4" else None)


def head_layout_of(config) -> HeadLayout:
    """The head layout of an ``AcceleratorConfig``'s model and head format
    (``config.head_weights``) in the words of the port the head unit reads through, the
    weight port (``config.weight_memory``: the bus word on a design without one): what
    a device head reads (the compiler places it, the unit and the software device read
    it, the performance model times it)."""
    return head_layout_for(config.model.vocab_size, config.model.hidden,
                           config.weight_memory.data_width, config.head_weights)
