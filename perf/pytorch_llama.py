#!/usr/bin/env python3
"""Eager-mode PyTorch LLaMA-composition model trained on CPU: the side-by-side reference for deepmpi's
LLaMA throughput (perf/compare_llama.sh).

The same composition as deepmpi's --model llama-*: RMSNorm, rotary embeddings (rotate-half), SwiGLU
MLP with a fused gate|up projection, grouped-query attention with a fused q|k|v projection, an untied
LM head, no biases. torch.optim.AdamW with weight decay on 2-D tensors, gradient clipping at 1.0,
deterministic random tokens. Prints one line per step and a final `pytorch: median ... tokens/s` line.
Run with Debian's interpreter: /usr/bin/python3 perf/pytorch_llama.py --model llama-125m ...
"""
import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "llama-tiny": dict(layers=2, hidden=128, heads=4, kv=2, ffn=352, vocab=512, seq=64),
    "llama-125m": dict(layers=12, hidden=768, heads=12, kv=4, ffn=2048, vocab=32000, seq=1024),
}


class RMSNorm(nn.Module):
    def __init__(self, c, eps=1e-5):
        super().__init__()
        self.w = nn.Parameter(torch.ones(c))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.w


def rope(x, cos, sin):  # x [b, h, t, hs]; pairs (i, i + hs/2)
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c, self.nh, self.kv = cfg["hidden"], cfg["heads"], cfg["kv"]
        self.hs = c // self.nh
        self.ffn = cfg["ffn"]
        self.ln1 = RMSNorm(c)
        self.qkv = nn.Linear(c, (self.nh + 2 * self.kv) * self.hs, bias=False)
        self.proj = nn.Linear(self.nh * self.hs, c, bias=False)
        self.ln2 = RMSNorm(c)
        self.fc = nn.Linear(c, 2 * self.ffn, bias=False)
        self.fc_proj = nn.Linear(self.ffn, c, bias=False)

    def forward(self, x, mask, cos, sin):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split([self.nh * self.hs, self.kv * self.hs, self.kv * self.hs], dim=2)
        q = rope(q.view(b, t, self.nh, self.hs).transpose(1, 2), cos, sin)
        k = rope(k.view(b, t, self.kv, self.hs).transpose(1, 2), cos, sin)
        v = v.view(b, t, self.kv, self.hs).transpose(1, 2)
        rep = self.nh // self.kv
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.hs))
        att = att.masked_fill(mask[:, :, :t, :t] == 0, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, self.nh * self.hs)
        x = x + self.proj(y)
        gate, up = self.fc(self.ln2(x)).split(self.ffn, dim=2)
        return x + self.fc_proj(F.silu(gate) * up)


class Llama(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c = cfg["hidden"]
        self.wte = nn.Embedding(cfg["vocab"], c)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg["layers"]))
        self.lnf = RMSNorm(c)
        self.head = nn.Linear(c, cfg["vocab"], bias=False)
        t, hs = cfg["seq"], c // cfg["heads"]
        self.register_buffer("mask", torch.tril(torch.ones(t, t)).view(1, 1, t, t))
        inv = 10000.0 ** (-torch.arange(0, hs // 2, dtype=torch.float64) * 2 / hs)
        ang = torch.arange(t, dtype=torch.float64)[:, None] * inv[None, :]
        self.register_buffer("cos", ang.cos().float())
        self.register_buffer("sin", ang.sin().float())
        for n, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * cfg["layers"]) if n.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets):
        t = idx.shape[1]
        x = self.wte(idx)
        cos, sin = self.cos[:t], self.sin[:t]
        for blk in self.blocks:
            x = blk(x, self.mask, cos, sin)
        logits = self.head(self.lnf(x))
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="llama-125m", choices=PRESETS)
    ap.add_argument("--seq-length", type=int)
    ap.add_argument("--micro-batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="torch.autocast('cpu', dtype=torch.bfloat16)")
    a = ap.parse_args()
    cfg = dict(PRESETS[a.model])
    if a.seq_length:
        cfg["seq"] = a.seq_length
    torch.set_num_threads(a.threads)
    torch.manual_seed(1234)
    model = Llama(cfg)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8)
    g = torch.Generator().manual_seed(1)
    tokens = a.micro_batch * cfg["seq"]
    times = []
    for step in range(1, a.steps + 1):
        data = torch.randint(0, cfg["vocab"], (a.micro_batch, cfg["seq"] + 1), generator=g)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            loss = model(data[:, :-1], data[:, 1:])
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        times.append(dt)
        print(f"step {step} | loss {loss.item():.4f} | grad norm {norm.item():.4f} | {dt*1e3:.1f} ms | "
              f"{tokens/dt:.0f} tokens/s", flush=True)
    med = statistics.median(times[1:] if len(times) > 1 else times)
    print(f"pytorch: median {med*1e3:.1f} ms/step | {tokens/med:.1f} tokens/s | torch {torch.__version__} "
          f"threads {torch.get_num_threads()}{' bf16 autocast' if a.bf16 else ''}", flush=True)


if __name__ == "__main__":
    main()
