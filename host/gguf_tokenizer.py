"""A ``tokenizers`` object built from a GGUF's vocabulary (``tokenizer.ggml.*``), so it
splits text into the same ids as llama.cpp, whose ``llama-vocab.cpp`` this follows.

- ``llama`` (SentencePiece-style): spaces become ``▁``, one ``▁`` is put in front of
  the text and after every special token (``add_space_prefix``, default true), then
  adjacent pieces merge, highest score first, into tokens of the vocabulary;
  characters no token holds become ``<0xXX>`` byte tokens. That is BPE with merges
  ranked by the merged token's score, as transformers converts a SentencePiece model
  into a tokenizer.json.
- ``gpt2`` (byte-level BPE): the text is split by the regular expressions of its
  ``tokenizer.ggml.pre`` type (below), each piece's UTF-8 bytes are mapped to GPT-2's
  printable characters and merged by ``tokenizer.ggml.merges`` in order; Llama-3-style
  types first look the whole piece up (``ignore_merges``).

Control and unknown tokens are special (found in the text as they are, dropped when
decoding); user-defined tokens are found in the text as they are and decoded.
BOS/EOS are added as ``add_bos_token`` / ``add_eos_token`` say (llama.cpp's defaults:
BOS for ``llama`` and the Llama-3 types, no EOS).
"""

from dataclasses import dataclass

from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors)

from .importers.gguf_vocab import TOKEN_TYPES, GGUFVocabulary

__all__ = ["build_tokenizer", "end_of_generation_ids", "PRE_TOKENIZERS"]

SPACE = "\u2581"                        # SentencePiece's ▁, which stands for a space

# llama.cpp's regular expressions (llm_tokenizer_bpe), applied one after the other, each
# splitting the pieces the one before left ("isolated": matches and the text between
# them are pieces).
GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
LLAMA3_SPLIT = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
                r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
                r"|\s+(?!\S)|\s+")
DEFAULT_SPLITS = (r"[\p{P}\$\+<=>\^~\|]+", GPT2_SPLIT, r"\p{N}+", r"[0-9][0-9][0-9]")


@dataclass(frozen=True)
class PreTokenizer:
    """A ``tokenizer.ggml.pre`` type: its splits, whether a piece that is a token is
    taken whole (``ignore_merges``), and whether BOS is added when the file is silent."""
    splits: tuple
    ignore_merges: bool = False
    add_bos: bool = False


_LLAMA3 = PreTokenizer((LLAMA3_SPLIT,), ignore_merges=True, add_bos=True)
PRE_TOKENIZERS = {
    "default": PreTokenizer(DEFAULT_SPLITS),
    "gpt-2": PreTokenizer((GPT2_SPLIT,)),
    "llama3": _LLAMA3, "llama-v3": _LLAMA3, "llama-bpe": _LLAMA3, "falcon3": _LLAMA3,
}
# Texts llama.cpp takes for end-of-turn tokens whatever the metadata says.
END_OF_TURN_TEXTS = ("<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                     "<|endoftext|>")


def build_tokenizer(vocab: GGUFVocabulary) -> Tokenizer:
    """The tokenizer of ``vocab``, its ids those of ``vocab.tokens``."""
    if vocab.model == "llama":
        tokenizer, add_bos = _sentencepiece(vocab), True
    else:
        pre = _pre_tokenizer(vocab)
        tokenizer, add_bos = _byte_level(vocab, pre), pre.add_bos
    _add_special_tokens(tokenizer, vocab)
    _add_bos_eos(tokenizer, vocab, add_bos if vocab.add_bos is None else vocab.add_bos)
    return tokenizer


def end_of_generation_ids(vocab: GGUFVocabulary) -> frozenset:
    """The ids that end generation, as llama.cpp's ``is_eog``: the EOS, EOT and EOM
    tokens of the metadata and the tokens named like an end of turn."""
    ids = {vocab.ids[name] for name in ("eos", "eot", "eom") if name in vocab.ids}
    ids.update(i for i, token in enumerate(vocab.tokens) if token in END_OF_TURN_TEXTS)
    return frozenset(ids)


def _pre_tokenizer(vocab: GGUFVocabulary) -> PreTokenizer:
    # Without a pre type llama.cpp uses "default" (and warns that quality suffers).
    pre = vocab.pre if vocab.pre is not None else "default"
    if pre not in PRE_TOKENIZERS:
        raise vocab.error(f"byte-level pre-tokenizer {pre!r} (tokenizer.ggml.pre) is not "
                          f"supported (expected one of {', '.join(PRE_TOKENIZERS)})")
    return PRE_TOKENIZERS[pre]


def _vocabulary(vocab: GGUFVocabulary) -> dict:
    return {token: index for index, token in enumerate(vocab.tokens)}


def _sentencepiece(vocab: GGUFVocabulary) -> Tokenizer:
    unknown = vocab.ids.get("unknown")
    tokenizer = Tokenizer(models.BPE(
        vocab=_vocabulary(vocab), merges=_merges_by_score(vocab), byte_fallback=True,
        fuse_unk=True, unk_token=None if unknown is None else vocab.tokens[unknown]))
    space_prefix = vocab.add_space_prefix is not False
    # Normalizers see each text between special tokens, so the prefix follows every
    # special token, as llama.cpp's is_prev_special does.
    steps = [normalizers.Prepend(SPACE)] if space_prefix else []
    tokenizer.normalizer = normalizers.Sequence(steps + [normalizers.Replace(" ", SPACE)])
    undo = [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    tokenizer.decoder = decoders.Sequence(
        undo + ([decoders.Strip(" ", 1, 0)] if space_prefix else []))
    return tokenizer


def _merges_by_score(vocab: GGUFVocabulary) -> list:
    """Every split of a normal or user-defined token into two tokens, the merged token's
    score first (ties: the merged, left and right token's ids), as SentencePiece merges."""
    ids = _vocabulary(vocab)
    mergeable = (TOKEN_TYPES["normal"], TOKEN_TYPES["user_defined"])
    ranked = []
    for index, piece in enumerate(vocab.tokens):
        if vocab.types[index] not in mergeable:
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in ids and right in ids:
                ranked.append((-float(vocab.scores[index]), index, ids[left], ids[right],
                               left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def _byte_level(vocab: GGUFVocabulary, pre: PreTokenizer) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE(vocab=_vocabulary(vocab), merges=vocab.merges,
                                     ignore_merges=pre.ignore_merges))
    splits = [pre_tokenizers.Split(Regex(pattern), behavior="isolated")
              for pattern in pre.splits]
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        splits + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _add_special_tokens(tokenizer: Tokenizer, vocab: GGUFVocabulary):
    special = (TOKEN_TYPES["control"], TOKEN_TYPES["unknown"])
    kinds = {TOKEN_TYPES["user_defined"]: False, **{kind: True for kind in special}}
    added = [AddedToken(token, special=kinds[kind], normalized=False)
             for token, kind in zip(vocab.tokens, vocab.types.tolist()) if kind in kinds]
    tokenizer.add_tokens([token for token in added if not token.special])
    tokenizer.add_special_tokens([token for token in added if token.special])


def _add_bos_eos(tokenizer: Tokenizer, vocab: GGUFVocabulary, add_bos: bool):
    bos = vocab.ids.get("bos") if add_bos else None
    eos = vocab.ids.get("eos") if vocab.add_eos else None
    special = {vocab.tokens[i]: i for i in (bos, eos) if i is not None}
    template = ([f"{vocab.tokens[bos]}:0"] if bos is not None else []) + ["$A:0"] + \
        ([f"{vocab.tokens[eos]}:0"] if eos is not None else [])
    if special:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=" ".join(template), special_tokens=list(special.items()))
