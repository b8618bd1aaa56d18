#!/usr/bin/env python3
"""Eager-mode PyTorch GPT-2 trained on CPU: the side-by-side reference for deepmpi's throughput.

Same architecture as deepmpi's model (pre-LayerNorm blocks, learned positions, tied
embeddings, tanh GELU, causal attention with a fused qkv projection), torch.optim.AdamW with
weight decay on 2-D tensors only, gradient clipping at 1.0, deterministic random tokens.
Prints one line per step and a final `pytorch: median ... tokens/s` line.
Run with Debian's interpreter: /usr/bin/python3 perf/pytorch_gpt2.py --model gpt2-124m ...
With --procs N --parallel ddp|zero1 it spawns N processes (gloo): DistributedDataParallel, plus
torch.distributed.optim.ZeroRedundancyOptimizer for zero1; tokens/s is then the job's.
"""
import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "tiny": dict(layers=2, hidden=128, heads=4, vocab=512, seq=64),
    "small": dict(layers=6, hidden=384, heads=6, vocab=8192, seq=256),
    "gpt2-124m": dict(layers=12, hidden=768, heads=12, vocab=50257, seq=1024),
}


class Block(nn.Module):
    def __init__(self, c, nh):
        super().__init__()
        self.nh = nh
        self.ln1 = nn.LayerNorm(c)
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)
        self.ln2 = nn.LayerNorm(c)
        self.fc = nn.Linear(c, 4 * c)
        self.fc_proj = nn.Linear(4 * c, c)

    def forward(self, x, mask):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q = q.view(b, t, self.nh, c // self.nh).transpose(1, 2)
        k = k.view(b, t, self.nh, c // self.nh).transpose(1, 2)
        v = v.view(b, t, self.nh, c // self.nh).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // self.nh))
        att = att.masked_fill(mask[:, :, :t, :t] == 0, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)
        x = x + self.proj(y)
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c = cfg["hidden"]
        self.wte = nn.Embedding(cfg["vocab"], c)
        self.wpe = nn.Embedding(cfg["seq"], c)
        self.blocks = nn.ModuleList(Block(c, cfg["heads"]) for _ in range(cfg["layers"]))
        self.lnf = nn.LayerNorm(c)
        t = cfg["seq"]
        self.register_buffer("mask", torch.tril(torch.ones(t, t)).view(1, 1, t, t))
        for n, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * cfg["layers"]) if n.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif n.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        b, t = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(t))
        for blk in self.blocks:
            x = blk(x, self.mask)
        logits = self.lnf(x) @ self.wte.weight.t()  # tied LM head
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gpt2-124m", choices=PRESETS)
    ap.add_argument("--seq-length", type=int)
    ap.add_argument("--micro-batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="torch.autocast('cpu', dtype=torch.bfloat16)")
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--parallel", default="ddp", choices=["ddp", "zero1"])
    a = ap.parse_args()
    if a.procs > 1:
        import torch.multiprocessing as mp
        mp.spawn(run, args=(a,), nprocs=a.procs, join=True)
    else:
        run(0, a)


def run(rank, a):
    dist = None
    if a.procs > 1:
        import os
        import torch.distributed as dist
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29511")
        dist.init_process_group("gloo", rank=rank, world_size=a.procs)
    cfg = dict(PRESETS[a.model])
    if a.seq_length:
        cfg["seq"] = a.seq_length
    torch.set_num_threads(a.threads)
    torch.manual_seed(1234)
    model = GPT(cfg)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    if dist is not None and a.parallel == "zero1":
        from torch.distributed.optim import ZeroRedundancyOptimizer
        opt = ZeroRedundancyOptimizer(decay, optimizer_class=torch.optim.AdamW, lr=6e-4, betas=(0.9, 0.95), eps=1e-8,
                                      weight_decay=0.1)
        opt.add_param_group({"params": no_decay, "weight_decay": 0.0})
    else:
        opt = torch.optim.AdamW(groups, lr=6e-4, betas=(0.9, 0.95), eps=1e-8)
    if dist is not None:
        model = nn.parallel.DistributedDataParallel(model)
    g = torch.Generator().manual_seed(1 + rank)
    tokens = a.micro_batch * cfg["seq"] * a.procs
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
        if rank == 0:
            print(f"step {step} | loss {loss.item():.4f} | grad norm {norm.item():.4f} | {dt*1e3:.1f} ms | "
              f"{tokens/dt:.0f} tokens/s", flush=True)
    med = statistics.median(times[1:] if len(times) > 1 else times)
    if rank != 0:
        return
    par = f" {a.procs} procs {a.parallel}" if a.procs > 1 else ""
    print(f"pytorch{par}: median {med*1e3:.1f} ms/step | {tokens/med:.1f} tokens/s | torch {torch.__version__} "
          f"threads {torch.get_num_threads()}{' bf16 autocast' if a.bf16 else ''}", flush=True)


if __name__ == "__main__":
    main()
