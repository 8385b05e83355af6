#!/usr/bin/env python3
"""Quantization-aware training of the shipped ``tiny`` model (PyTorch CPU).

PyTorch is an optional, training-only dependency (``pip install tritium[train]``);
nothing at run time imports this file. The network is exactly the forward pass of
``tritium.sim.reference`` (docs/model_import.md, "The model"), written in torch with
straight-through estimators for the two quantizers:

    weight_quant(W): s = mean|W| (>= 1e-5);  W_q = clamp(round(W / s), -1, 1) * s
    act_quant(x):    s = 127 / max|x| (>= 1e-5, per token);  x_q = clamp(round(x*s), -128, 127) / s
    STE:             forward uses the quantized value, backward passes the gradient through.

The corpus is regenerated here (``tools/make_corpus.py``, training seed) and never
shipped. At the end the latent weights are quantized with
``tritium.host.model.weight_quant`` into a ``tritium.host.model.Model``, saved with
``Model.save_npz``, reloaded, and checked against the float64 reference
(``tritium.sim.reference.ReferenceModel``): logits must agree with this script's own
forward pass run in float64, then the held-out perplexity and a greedy sample are
printed.

    python tools/train_tiny.py --steps 1500 --out host/models/tiny.npz --seed 1
    python tools/train_tiny.py --eval-only --out host/models/tiny.npz    # check only
"""

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import make_corpus  # noqa: E402  (tools/make_corpus.py)
from tritium.hw.config import MODEL_PRESETS  # noqa: E402
from tritium.host.model import LINEAR_NAMES, Layer, Model, weight_quant  # noqa: E402
from tritium.sim.reference import ReferenceModel  # noqa: E402

HELDOUT = REPO / "host" / "data" / "tiny_heldout.txt"
PROMPT = "Once upon a time"


# ---------------------------------------------------------------------------------------
# Evaluation with the float64 reference (NumPy only)
# ---------------------------------------------------------------------------------------

def heldout_windows(data: bytes, window: int = 256):
    """Consecutive non-overlapping windows of ``window`` bytes from the start of ``data``
    (the last one may be shorter); windows shorter than 2 bytes are dropped."""
    return [data[i:i + window] for i in range(0, len(data), window)
            if len(data[i:i + window]) >= 2]


def log_softmax_np(logits):
    m = logits.max(axis=-1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))


def reference_perplexity(model: Model, data: bytes, window: int = 256):
    """Per-byte perplexity of the float64 reference, teacher-forced.

    Each window is run from an empty cache; byte t+1 of a window is scored from the
    logits after bytes 0..t, so a window of n bytes gives n-1 predictions. Returns
    (perplexity, number of predictions).
    """
    ref = ReferenceModel(model)
    nll, count = 0.0, 0
    for chunk in heldout_windows(data, window):
        ids = np.frombuffer(chunk, dtype=np.uint8).astype(np.int64)
        logp = log_softmax_np(ref.forward(ids, ref.new_cache()))
        nll -= float(logp[np.arange(len(ids) - 1), ids[1:]].sum())
        count += len(ids) - 1
    return math.exp(nll / count), count


def reference_greedy(model: Model, prompt: str = PROMPT, tokens: int = 64) -> bytes:
    """Greedy decoding with the float64 reference and its KV cache."""
    ref = ReferenceModel(model)
    cache = ref.new_cache()
    ids = list(prompt.encode("utf-8"))
    logits = ref.forward(ids, cache)
    out = []
    for _ in range(tokens):
        nxt = int(np.argmax(logits[-1]))
        out.append(nxt)
        if cache.length >= model.config.max_context:
            break
        logits = ref.forward([nxt], cache)
    return bytes(out)


# ---------------------------------------------------------------------------------------
# The torch model (imported lazily so --help and the NumPy helpers need no torch)
# ---------------------------------------------------------------------------------------

def build_torch(cfg):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    def ste(x, xq):
        return x + (xq - x).detach()

    def act_quant(x):
        scale = 127.0 / x.detach().abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
        return ste(x, torch.clamp(torch.round(x * scale), -128, 127) / scale)

    def quant_weight(w):
        scale = w.detach().abs().mean().clamp(min=1e-5)
        return ste(w, torch.clamp(torch.round(w / scale), -1, 1) * scale)

    def rms_norm(x, gain, eps):
        return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * gain

    class BitLinear(nn.Module):
        def __init__(self, n_in, n_out):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(n_out, n_in) * 0.02)

        def forward(self, x):
            return act_quant(x) @ quant_weight(self.weight).t()

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn_norm = nn.Parameter(torch.ones(cfg.hidden))
            self.attn_sub_norm = nn.Parameter(torch.ones(cfg.q_dim))
            self.ffn_norm = nn.Parameter(torch.ones(cfg.hidden))
            self.ffn_sub_norm = nn.Parameter(torch.ones(cfg.ffn))
            for name, (n_out, n_in) in cfg.linear_shapes().items():
                setattr(self, name, BitLinear(n_in, n_out))

        def forward(self, x, cos, sin):
            b, t, _ = x.shape
            eps = cfg.norm_eps
            h = rms_norm(x, self.attn_norm, eps)
            q = self.wq(h).view(b, t, cfg.heads, cfg.head_dim).transpose(1, 2)
            k = self.wk(h).view(b, t, cfg.kv_heads, cfg.head_dim).transpose(1, 2)
            v = self.wv(h).view(b, t, cfg.kv_heads, cfg.head_dim).transpose(1, 2)
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            # GQA: query head i uses kv head i // kv_group (np.repeat in the reference).
            k = k.repeat_interleave(cfg.kv_group, dim=1)
            v = v.repeat_interleave(cfg.kv_group, dim=1)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            a = a.transpose(1, 2).reshape(b, t, cfg.q_dim)
            x = x + self.wo(rms_norm(a, self.attn_sub_norm, eps))
            h = rms_norm(x, self.ffn_norm, eps)
            gate, up = self.w_gate(h), self.w_up(h)
            act = F.silu(gate) if cfg.activation == "silu" else torch.relu(gate) ** 2
            return x + self.w_down(rms_norm(act * up, self.ffn_sub_norm, eps))

    def rope(x, cos, sin):
        # Rotate-half pairing: dims i and i + head_dim/2 rotate together by angle i.
        half = x.shape[-1] // 2
        a, b = x[..., :half], x[..., half:]
        return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)

    class TinyLM(nn.Module):
        def __init__(self):
            super().__init__()
            assert cfg.rope_pairing == "half" and not cfg.tied_embedding
            self.embedding = nn.Parameter(torch.randn(cfg.vocab_size, cfg.hidden) * 0.02)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.layers))
            self.output_norm = nn.Parameter(torch.ones(cfg.hidden))
            self.lm_head = nn.Parameter(torch.randn(cfg.vocab_size, cfg.hidden) * 0.02)

        def forward(self, ids):
            t = ids.shape[1]
            dtype = self.embedding.dtype
            inv_freq = cfg.rope_theta ** (-torch.arange(0, cfg.head_dim, 2,
                                                        dtype=torch.float64) / cfg.head_dim)
            angles = torch.arange(t, dtype=torch.float64)[:, None] * inv_freq[None, :]
            cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)
            x = self.embedding[ids]
            for block in self.blocks:
                x = block(x, cos, sin)
            return rms_norm(x, self.output_norm, cfg.norm_eps) @ self.lm_head.t()

    return TinyLM


def export(net, cfg) -> Model:
    """Latent torch weights -> tritium Model, with the project's own weight_quant."""
    def f32(p):
        return p.detach().to("cpu").float().numpy().copy()

    layers = []
    for block in net.blocks:
        parts = {name: f32(getattr(block, name))
                 for name in ("attn_norm", "attn_sub_norm", "ffn_norm", "ffn_sub_norm")}
        for name in LINEAR_NAMES:
            parts[name] = weight_quant(f32(getattr(block, name).weight))
        layers.append(Layer(**parts))
    return Model(cfg, f32(net.embedding), layers, f32(net.output_norm),
                 f32(net.lm_head)).validate()


def compare_with_reference(net, model: Model, data: bytes, n_seq=4, length=200,
                           double=True):
    """Max relative logit difference, max|torch - reference| / max|reference|, over
    ``n_seq`` held-out sequences of ``length`` bytes. The torch forward runs on the latent
    weights in float64 (``double``, the semantic check) or float32 (training numerics)."""
    import copy
    import torch
    net64 = copy.deepcopy(net).double() if double else net
    ref = ReferenceModel(model)
    worst = 0.0
    for j in range(n_seq):
        start = j * (len(data) // n_seq)
        ids = np.frombuffer(data[start:start + length], dtype=np.uint8).astype(np.int64)
        with torch.no_grad():
            mine = net64(torch.from_numpy(ids)[None])[0].numpy()
        theirs = ref.forward(ids, ref.new_cache())
        rel = np.abs(mine - theirs).max() / np.abs(theirs).max()
        worst = max(worst, float(rel))
    return worst


def check(net, model_path: Path, heldout: bytes):
    model = Model.load_npz(model_path)
    cfg = model.config
    assert cfg == MODEL_PRESETS["tiny"], cfg
    t0 = time.time()
    if net is not None:
        # The float64 torch forward of the *latent* weights must equal the reference of the
        # exported ones (weight_quant is applied on both sides).
        rel = compare_with_reference(net, model, heldout)
        print(f"torch float64 forward vs float64 reference: max relative logit "
              f"difference {rel:.2e}")
        if rel > 1e-6:
            raise SystemExit("the torch forward and the reference disagree: a semantic differs")
        # Float32 (as trained) differs by rounding only, now and then flipping an int8 code.
        rel32 = compare_with_reference(net, model, heldout, double=False)
        print(f"torch float32 forward vs float64 reference: max relative logit "
              f"difference {rel32:.2e}")
    ppl, count = reference_perplexity(model, heldout)
    print(f"held-out perplexity (float64 reference, {count} predictions in 256-byte "
          f"windows): {ppl:.4f} per byte ({math.log2(ppl):.4f} bits/byte)")
    sample = reference_greedy(model)
    print(f"greedy after {PROMPT!r}: {sample!r}")
    packed = sum(n * k for n, k in cfg.linear_shapes().values()) * cfg.layers
    print(f"ternary weights: {packed}, packed at 5 bits / 3 weights: "
          f"{packed * 5 / 3 / 1e6:.3f} Mbit; check took {time.time() - t0:.1f} s")
    return ppl, sample


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", default=str(REPO / "host" / "models" / "tiny.npz"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=256, help="training sequence length")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--min-lr-frac", type=float, default=0.05)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--corpus-bytes", type=int, default=make_corpus.DEFAULT_BYTES["train"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--eval-only", action="store_true",
                        help="skip training: check the model at --out with the reference")
    args = parser.parse_args(argv)

    heldout = HELDOUT.read_bytes()
    if args.eval_only:
        check(None, Path(args.out), heldout)
        return

    # On a shared machine, OpenMP threads that spin while waiting make every step several
    # times slower whenever another process holds a core; passive waiting costs little.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(args.threads)
    # The embedding's backward (index_put with accumulate) is otherwise nondeterministic.
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    cfg = MODEL_PRESETS["tiny"]
    assert args.seq <= cfg.max_context

    t_start = time.time()
    text = make_corpus.generate(make_corpus.SEEDS["train"], args.corpus_bytes)
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
    # Story starts (a story begins the text or follows a blank line): half of the
    # windows start there, so position 0 often holds "Once upon a time" as in the demo.
    starts = np.flatnonzero((data[:-2] == 10) & (data[1:-1] == 10)) + 2
    starts = np.concatenate([[0], starts[starts < len(data) - args.seq - 1]])
    print(f"corpus: {len(data)} bytes, {len(starts)} stories "
          f"({time.time() - t_start:.1f} s)", flush=True)
    data_t = torch.from_numpy(data)
    held_t = [torch.from_numpy(np.frombuffer(c, dtype=np.uint8).astype(np.int64))
              for c in heldout_windows(heldout)]

    TinyLM = build_torch(cfg)
    net = TinyLM()
    n_params = sum(p.numel() for p in net.parameters())
    print(f"parameters: {n_params}", flush=True)

    decay = [p for n, p in net.named_parameters() if n.endswith(".weight")]
    no_decay = [p for n, p in net.named_parameters() if not n.endswith(".weight")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        progress = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (args.min_lr_frac +
                          (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))

    def batch():
        n_story = args.batch // 2
        offs = np.concatenate([
            rng.choice(starts, n_story),
            rng.integers(0, len(data) - args.seq - 1, args.batch - n_story)])
        idx = torch.from_numpy(offs)[:, None] + torch.arange(args.seq + 1)[None]
        chunk = data_t[idx]
        return chunk[:, :-1], chunk[:, 1:]

    def heldout_loss():
        net.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for ids in held_t:
                logits = net(ids[None, :-1])[0]
                total += F.cross_entropy(logits, ids[1:], reduction="sum").item()
                count += len(ids) - 1
        net.train()
        return total / count

    t_train = time.time()
    smooth = None
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        x, y = batch()
        logits = net(x)
        loss = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        smooth = loss.item() if smooth is None else 0.95 * smooth + 0.05 * loss.item()
        if step % 25 == 0 or step == args.steps - 1:
            elapsed = time.time() - t_train
            print(f"step {step:5d}  loss {loss.item():.4f}  smooth {smooth:.4f}  "
                  f"lr {lr_at(step):.2e}  {elapsed:7.1f} s", flush=True)
        if (step + 1) % args.eval_every == 0 or step == args.steps - 1:
            hl = heldout_loss()
            print(f"  held-out loss {hl:.4f} nats/byte, perplexity {math.exp(hl):.4f}",
                  flush=True)
    train_time = time.time() - t_train
    print(f"trained {args.steps} steps of {args.batch}x{args.seq} tokens in "
          f"{train_time:.0f} s ({train_time / 60:.1f} min); final smoothed loss {smooth:.4f}",
          flush=True)

    model = export(net, cfg)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save_npz(out)
    print(f"wrote {out} ({os.path.getsize(out)} bytes)", flush=True)
    check(net, out, heldout)


if __name__ == "__main__":
    main()
