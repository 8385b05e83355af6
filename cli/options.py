"""Arguments several commands share, and the checks of their values.

The help of ``--backend`` and ``--board`` is written from the registries
(:data:`tritium.host.runtime.BACKENDS`, :data:`tritium.host.transports.TRANSPORTS`,
:data:`tritium.boards.BOARDS`), so a backend or board registered there is offered here.
"""

from pathlib import Path

from tritium.boards import BOARDS
from tritium.host.errors import InputError

__all__ = ["add_model", "add_i2s_layout", "add_backend", "add_accelerator_config", "add_board",
           "add_head_format", "backend_help", "on_host", "accelerator_config", "device_config",
           "with_head_format", "check_text", "output_file"]


def add_model(parser, help="'tiny', or a .npz / .gguf file or a Hugging Face directory"):
    parser.add_argument("--model", required=True, help=help)


def add_i2s_layout(parser) -> None:
    """``--i2s-layout``: how a GGUF's I2_S tensors are packed, which the file does not
    record (docs/model_import.md, "I2_S")."""
    from tritium.host.importers.i2s import I2S_LAYOUTS
    parser.add_argument("--i2s-layout", choices=list(I2S_LAYOUTS), default=None,
                        help="the machine that quantized a GGUF's I2_S tensors (bitnet.cpp "
                             "packs 128-value blocks on x86, 64 on ARM; default: x86 for "
                             "the 2B-4T architectures, whose released files are x86's)")


def backend_help(choices=None) -> str:
    """Every backend, from the registries: the host's models, then the transports."""
    from tritium.host.runtime import BACKEND_DESCRIPTIONS
    from tritium.host.transports import TRANSPORTS
    entries = [f"{name} ({text})" for name, text in BACKEND_DESCRIPTIONS.items()]
    if choices is None:
        entries += [f"{entry.usage} ({entry.description})" for entry in TRANSPORTS.values()]
    return "; ".join(entries)


def add_backend(parser, default: str, host_only: bool = False) -> None:
    if host_only:
        from tritium.host.runtime import BACKENDS
        parser.add_argument("--backend", default=default, choices=list(BACKENDS),
                            help=backend_help(BACKENDS))
    else:
        parser.add_argument("--backend", default=default, help=backend_help())


def on_host(backend: str) -> bool:
    """Whether ``--backend`` computes on the host (no device, no accelerator config)."""
    from tritium.host.runtime import BACKENDS
    return backend in BACKENDS


def add_accelerator_config(parser, default_text: str) -> None:
    from tritium.hw.config import ACCELERATOR_PRESETS
    parser.add_argument("--config", default=None,
                        help=f"accelerator preset ({', '.join(ACCELERATOR_PRESETS)}) or a "
                             f"config .json file as `tritium generate` writes (default: "
                             f"{default_text})")
    add_head_format(parser)


def add_head_format(parser) -> None:
    from tritium.hw.config import HEAD_FORMATS
    parser.add_argument("--head-format", default=None, choices=list(HEAD_FORMATS),
                        help="the LM head's weights: int8 (a scale per row) or int4 (half "
                             "the bytes, a scale per 64 hidden dims, less faithful: "
                             "docs/numerics.md section 10); default: the config's")


def with_head_format(config, head_format: str = None):
    """``config`` with its LM head in ``head_format`` (``--head-format``,
    :meth:`AcceleratorConfig.with_head_format`); ``config`` itself for ``None``."""
    if head_format is None:
        return config
    try:
        return config.with_head_format(head_format)
    except ValueError as exc:
        raise InputError(f"--head-format {head_format}: {exc}") from None


def add_board(parser, required: bool, help: str) -> None:
    parser.add_argument("--board", required=required, default=None, metavar="BOARD",
                        help=f"{help}: {', '.join(BOARDS)}")


def accelerator_config(name: str):
    """A preset by name, or a config JSON file (as ``tritium generate`` writes)."""
    from tritium.hw.config import ACCELERATOR_PRESETS, AcceleratorConfig
    if name in ACCELERATOR_PRESETS:
        return ACCELERATOR_PRESETS[name]
    if name.endswith(".json"):
        try:
            config = AcceleratorConfig.from_json(Path(name).read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from None
        except RecursionError:
            raise InputError(f"{name}: not an accelerator config: JSON nested too "
                             f"deeply") from None
        except ValueError as exc:      # UnicodeDecodeError and JSONDecodeError too
            raise InputError(f"{name}: {str(exc).splitlines()[0]}") from None
        # The link's frame length, and INFO's report of it, are 16-bit (docs/link.md).
        if config.max_payload >= 2 ** 16:
            raise InputError(f"{name}: max_payload must be below 65536 (a 16-bit frame "
                             f"length), not {config.max_payload}")
        return config
    raise InputError(f"unknown accelerator config {name!r}; choose one of "
                     f"{', '.join(ACCELERATOR_PRESETS)} or a config .json file")


def device_config(args):
    """The accelerator config a device backend runs: ``--config``, else the preset its
    transport's device is generated for (``ulx3s`` for ``serial:``, ``kv260`` for
    ``zynq``, else ``tiny``). ``--config`` with a host backend is refused: it would be
    ignored."""
    from tritium.host.transports import transport_entry
    if on_host(args.backend):
        for flag, value in (("--config", args.config), ("--head-format", args.head_format)):
            if value is not None:
                raise InputError(f"{flag} {value} applies only to device backends; "
                                 f"--backend {args.backend} computes on the host and has no "
                                 f"accelerator config")
        return None
    config = accelerator_config(args.config or transport_entry(args.backend).default_config)
    return with_head_format(config, args.head_format)


def check_text(text: str, what: str) -> str:
    """A command-line string that must be text: one that is not valid UTF-8 reaches
    Python with its bad bytes as lone surrogates (surrogateescape); refuse it here."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        try:
            bad = f"byte 0x{text[exc.start].encode('utf-8', 'surrogateescape').hex()}"
        except UnicodeEncodeError:          # a lone surrogate not from a byte
            bad = f"U+{ord(text[exc.start]):04X}"
        raise InputError(f"{what} is not valid UTF-8 ({bad} at character "
                         f"{exc.start})") from None
    return text


def output_file(text: str, what: str, contents: str, suffix: str = None) -> Path:
    """The path of an output file (option ``what``, holding ``contents``), written exactly
    as given: not a directory, in a directory that exists, ending in ``suffix`` if one
    is required. Checked before any model is loaded or run."""
    path = Path(text)
    if path.is_dir():
        raise InputError(f"{what} {text}: is a directory; give a file to write")
    if suffix and path.suffix.lower() != suffix:
        raise InputError(f"{what} {text}: give a path ending in {suffix}")
    if not path.parent.is_dir():
        raise InputError(f"{what} {text}: cannot write {contents} there: directory "
                         f"{path.parent} does not exist")
    return path
