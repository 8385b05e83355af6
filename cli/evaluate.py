"""``tritium eval`` (perplexity of a text, or the logits of token ids) and ``tritium info``
(a model's configuration)."""

import dataclasses
from pathlib import Path

import numpy as np

from tritium.host.errors import InputError
from .command import Command
from .console import token_progress
from .options import add_backend, add_i2s_layout, add_model, output_file
from .run import load

__all__ = ["EvalCommand", "InfoCommand"]


def read_text_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                         f"at offset {exc.start})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read text ({exc.strerror or exc})") from None


def parse_token_list(text: str, vocab_size: int) -> np.ndarray:
    from tritium.host.runtime import check_token_ids
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--tokens must be comma-separated integers, not {text!r}") from None
    # Range-check as Python integers: NumPy's int64 cannot hold every id typed.
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise InputError(f"token id {bad[0]} is out of range for a vocabulary of "
                         f"{vocab_size} (valid: 0..{vocab_size - 1})")
    return check_token_ids(np.array(ids, dtype=np.int64), vocab_size)


def save_logits(path: Path, logits: np.ndarray) -> None:
    try:
        with open(path, "wb") as file:      # as given: np.save would add .npy
            np.save(file, logits)
    except OSError as exc:
        raise InputError(f"cannot write the logits to {path}: {exc.strerror or exc}") from None


class EvalCommand(Command):
    name = "eval"
    help = "perplexity of a text, or logits of tokens"

    def arguments(self, parser):
        add_model(parser)
        add_i2s_layout(parser)
        add_backend(parser, default="golden", host_only=True)
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--text", help="a UTF-8 text file: report its perplexity")
        source.add_argument("--tokens", dest="token_ids",
                            help="comma-separated token ids: compute logits for every position")
        parser.add_argument("--logits", help="with --tokens: write the logits to this .npy file")
        parser.add_argument("--window", type=int, default=None,
                            help="tokens per perplexity window (default: the context)")

    def check(self, args):
        if args.window is not None and args.window < 2:
            raise InputError(f"--window must be at least 2, not {args.window}")
        if args.logits and args.text is not None:
            raise InputError("--logits goes with --tokens, not --text")
        if args.logits:
            output_file(args.logits, "--logits", "the logits")

    def run(self, args):
        from tritium.host.runtime import Session, check_window, make_backend, perplexity
        # Token ids need no tokenizer: a model without one is evaluated all the same.
        model, tokenizer = load(args.model, args.i2s_layout,
                                tokenizer_needed=args.text is not None)
        check_window(args.window, model.config)
        backend = make_backend(args.backend, model)
        if args.text is not None:
            ids = tokenizer.encode(read_text_file(Path(args.text)))
            with token_progress(f"perplexity on {args.backend}", len(ids)) as progress:
                ppl, count = perplexity(backend, ids, args.window, progress)
            return {"model": model.config.name, "backend": args.backend,
                    "text": str(Path(args.text)), "perplexity": ppl, "tokens": count}
        ids = parse_token_list(args.token_ids, model.config.vocab_size)
        logits = Session(backend).feed(ids)
        if args.logits:
            save_logits(Path(args.logits), logits)
        return {"model": model.config.name, "backend": args.backend, "positions": len(ids),
                "vocab": model.config.vocab_size, "logits": args.logits,
                "argmax": logits.argmax(axis=-1).tolist(), "shape": list(logits.shape)}

    def render(self, result, args):
        if "perplexity" in result:
            yield (f"{result['model']} on {result['backend']}: perplexity "
                   f"{result['perplexity']:.4f} over {result['tokens']} tokens")
        elif result["logits"]:
            yield f"logits of shape {tuple(result['shape'])} written to {result['logits']}"
        else:
            yield f"next-token argmax per position: {result['argmax']}"


class InfoCommand(Command):
    name = "info"
    help = "show a model's configuration"

    def arguments(self, parser):
        add_model(parser)
        add_i2s_layout(parser)

    def run(self, args):
        from tritium.host.packer import PackedTensor
        from tritium.hw.config import TileConfig
        model, tokenizer = load(args.model, args.i2s_layout, tokenizer_needed=False)
        config, tile = model.config, TileConfig()
        packed_bits = sum(PackedTensor(b"", shape, tile).bits
                          for shape in config.linear_shapes().values()) * config.layers
        info = dataclasses.asdict(config)
        info.update({
            "ternary_weights": config.ternary_weights_per_layer * config.layers,
            "packed_weight_bits": packed_bits,
            "tokenizer": None if tokenizer is None else type(tokenizer).__name__,
        })
        return info

    def render(self, result, args):
        width = max(map(len, result))
        for key, value in result.items():
            if key == "tokenizer" and value is None:
                value = ("none found (no tokenizer.json beside the model, no tokenizer in "
                         "its GGUF metadata): run and eval --text need one, eval --tokens "
                         "does not")
            yield f"{key:<{width}}  {value}"
