"""Resource reports: ``tritium report --block tlmm`` (docs/resources.md).

For the TLMM block, synthesises per FPGA family (:mod:`tritium.boards.synth`):

- ``tlmm_datapath``: table builder + lookup tree (:class:`~tritium.hw.tlmm.baseline.TLMMDatapath`);
- ``adder_tree``: the plain ternary adder-tree baseline at the same MACs per cycle
  (:class:`~tritium.hw.tlmm.baseline.AdderTreeDatapath`);
- ``tlmm_engine``: the whole :class:`~tritium.hw.tlmm.engine.TLMMEngine`, accumulator
  memory included;
- ``tlmm_core``: :class:`~tritium.hw.tlmm.core.TLMMCore`, weight buffer manager + engine.

Every figure is a synthesis estimate (Yosys, before place and route), never a
measurement on a board (the kinds of figure are defined in docs/performance.md).

This module is imported when the CLI builds its parser, so it imports Amaranth and the
gateware only inside the functions that synthesise.
"""

import dataclasses
import json

from tritium.hw.config import ACCELERATOR_PRESETS, TLMM_PRESETS, TLMMConfig, tlmm_preset
from tritium.hw.errors import InputError

__all__ = ["BLOCKS", "DESIGNS", "FAMILY_CHOICES", "PRESETS", "parse_config", "report_block",
           "format_report"]

BLOCKS = ("tlmm",)
DESIGNS = ("tlmm_datapath", "adder_tree", "tlmm_engine", "tlmm_core")
FAMILY_CHOICES = ("ecp5", "xcup", "all")

# The engines by name (hw/config.py: the engine presets, then each accelerator preset's
# engine). An accelerator preset's engine reports with that preset's memory bus; `t32r16`
# with a 128-bit AXI HP port and a byte address space of 4 GiB (2**28 words of 16 bytes).
PRESETS = (*TLMM_PRESETS, *ACCELERATOR_PRESETS)
_PRESET_MEMORY = {"t32r16": {"data_width": 128, "addr_width": 28}}

_SYNTH_HINT = "synthesis estimate (yosys, out of context, before place and route)"


def parse_config(text: str):
    """A preset name or a JSON object of TLMMConfig fields -> (TLMMConfig, MemoryConfig).

    Fields missing from the JSON take TLMMConfig's defaults; the memory is the default
    :class:`MemoryConfig` unless a preset names another. Raises :class:`InputError`.
    """
    from tritium.hw.memory.port import MemoryConfig
    if text in ACCELERATOR_PRESETS:
        return tlmm_preset(text), ACCELERATOR_PRESETS[text].memory
    if text in PRESETS:
        return tlmm_preset(text), MemoryConfig(**_PRESET_MEMORY.get(text, {}))
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--config must be a preset ({', '.join(PRESETS)}) or a JSON object "
                         f"of TLMMConfig fields; {text!r} is neither ({exc.msg})") from None
    if not isinstance(fields, dict):
        raise InputError(f"--config JSON must be an object of TLMMConfig fields, not {text!r}")
    known = {field.name for field in dataclasses.fields(TLMMConfig)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise InputError(f"--config has unknown field(s) {', '.join(unknown)}; "
                         f"TLMMConfig fields are {', '.join(sorted(known))}")
    try:
        return TLMMConfig(**fields), MemoryConfig()
    except (TypeError, ValueError) as exc:
        raise InputError(f"invalid --config: {exc}") from None


def _families(families) -> tuple:
    from .synth import FAMILIES
    families = tuple(families)
    bad = [family for family in families if family not in FAMILIES]
    if bad or not families:
        raise InputError(f"unknown FPGA family {bad[0] if bad else '(none)'!r}: choose from "
                         f"{', '.join(FAMILIES)}")
    return families


def _build(design: str, config: TLMMConfig, memory):
    from tritium.hw.tlmm.baseline import AdderTreeDatapath, TLMMDatapath
    from tritium.hw.tlmm.core import TLMMCore
    from tritium.hw.tlmm.engine import TLMMEngine
    if design == "tlmm_datapath":
        return TLMMDatapath(config)
    if design == "adder_tree":
        return AdderTreeDatapath(config)
    if design == "tlmm_engine":
        return TLMMEngine(config)
    return TLMMCore(config, memory)


def _ratio(numerator, denominator):
    return round(numerator / denominator, 3) if denominator else None


def report_block(block: str, config: TLMMConfig, families=("ecp5", "xcup"), *,
                 memory=None, designs=DESIGNS, timeout: float = None,
                 progress=None) -> dict:
    """Synthesise ``block``'s designs for each family and return the resource counts.

    For ``"tlmm"``: :data:`DESIGNS` (or the subset ``designs``), each a
    :func:`~tritium.boards.synth.synthesize` result, and per family the ratio of the
    TLMM datapath's LUTs and FFs to the adder tree's (``table_vs_adder_tree``; above 1
    means the table costs more). ``memory`` is the :class:`MemoryConfig` of the core's
    memory port (default: ``MemoryConfig()``). ``progress``, if given, is called with
    one line of text after each synthesis. Raises :class:`InputError` for an unknown
    block, family or design, and :class:`~tritium.boards.synth.SynthesisError` when
    Yosys is missing or fails.
    """
    from tritium.hw.memory.port import MemoryConfig
    from .synth import synthesize, yosys_version
    if block not in BLOCKS:
        raise InputError(f"unknown block {block!r}: choose from {', '.join(BLOCKS)}")
    if not isinstance(config, TLMMConfig):
        raise TypeError(f"config must be a TLMMConfig, not {config!r}")
    families = _families(families)
    unknown = [design for design in designs if design not in DESIGNS]
    if unknown:
        raise InputError(f"unknown design {unknown[0]!r}: choose from {', '.join(DESIGNS)}")
    memory = memory if memory is not None else MemoryConfig()
    report = {
        "block": block,
        "kind": _SYNTH_HINT,
        "tool": yosys_version(),
        "config": dataclasses.asdict(config),
        "memory": dataclasses.asdict(memory),
        "macs_per_cycle": config.macs_per_cycle,
        "families": {},
    }
    for family in families:
        results = {}
        for design in designs:
            results[design] = synthesize(_build(design, config, memory), family,
                                         name=f"{design}_{config}", timeout=timeout)
            if progress:
                progress(f"{family} {design}: {results[design]['resources']['luts']} LUTs, "
                         f"{results[design]['seconds']} s ({results[design]['flow']})")
        entry = {"designs": results}
        if "tlmm_datapath" in results and "adder_tree" in results:
            table = results["tlmm_datapath"]["resources"]
            tree = results["adder_tree"]["resources"]
            entry["table_vs_adder_tree"] = {key: _ratio(table[key], tree[key])
                                            for key in ("luts", "ffs")}
        report["families"][family] = entry
    return report


_COLUMNS = {
    "ecp5": ("luts", "lut4", "carry_ccu2c", "ffs", "bram", "dsp", "lutram"),
    "xcup": ("luts", "carry", "widemux", "ffs", "bram", "uram", "dsp", "lutram"),
}


def format_report(report: dict) -> str:
    """The report as readable text tables, one per family."""
    config = report["config"]
    lines = [f"{report['block']}: G{config['group']} T{config['tables']} R{config['rows']} "
             f"{config['table_mode']} tables, {config['tokens']} token(s), max K "
             f"{config['max_k']}, max N {config['max_n']}: {report['macs_per_cycle']} "
             f"MACs/cycle",
             f"{report['kind']}, {report['tool']}"]
    for family, entry in report["families"].items():
        columns = _COLUMNS[family]
        header = ["design", *columns, "flow", "seconds"]
        rows = [[design, *(_number(result["resources"][c]) for c in columns),
                 result["flow"], f"{result['seconds']:.1f}"]
                for design, result in entry["designs"].items()]
        widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
        lines += ["", family]
        for row in (header, *rows):
            lines.append("  ".join(str(cell).rjust(width) if i else str(cell).ljust(width)
                                   for i, (cell, width) in enumerate(zip(row, widths))))
        ratio = entry.get("table_vs_adder_tree")
        if ratio:
            lines.append(f"table vs adder tree: LUTs x{_number(ratio['luts'])}, "
                         f"FFs x{_number(ratio['ffs'])}")
    return "\n".join(lines)


def _number(value):
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)
