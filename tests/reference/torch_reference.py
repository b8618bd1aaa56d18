#!/usr/bin/env python3
"""An independent PyTorch implementation of deepmpi's model compositions, held against a dump of
one deepmpi forward + backward (tests/reference/dump_model.cpp), in the manner of llm.c's
test_gpt2.c: the same weights and batch; the loss and EVERY parameter gradient compared.

The model is written here from the math, not from deepmpi's code, and built from the manifest's
ModelConfig alone: pre-norm blocks with LayerNorm (weight and bias) or RMSNorm
(y = x / sqrt(mean(x^2) + eps) * w); learned, rotary or no positions; causal attention, MHA or
grouped-query (fused qkv rows = [Q heads | K heads | V heads], query head h reads kv head
h // (NH / KVH)); RoPE in the non-interleaved "rotate half" convention (dimension i pairs with
i + hs/2, angle t * base^(-2i/hs)) on Q and K after the qkv projection; a tanh-GELU MLP or SwiGLU
(fc rows = [gate | up], act = silu(gate) * up); biases on or off (LayerNorm always has one); the
head tied to wte or its own lm_head.weight; the mean cross-entropy over rows whose target is not
-100 (F.cross_entropy(ignore_index=-100)); gradients from autograd.

The parameter layout (names, shapes, order, offsets) is also derived here and must equal the
manifest's tensor list.

Tolerances (deepmpi in fp32, this model in fp64 by default, so the difference is deepmpi's
rounding): fp32's unit roundoff is 6e-8; a length-K reduction (GEMM inner dimension up to 4C,
weight gradients summed over B*T rows, a softmax over V) carries relative error ~sqrt(K) * 6e-8,
and a few tens of such ops are chained, so about 1e-6 of a tensor's largest gradient is expected
(measured on GPT-2 "tiny" and "llama-tiny" and their variants, B=4 T<=64: at most 1.3e-6 over
all tensors; the mean loss within 1e-8, accumulated in double; the per-row losses within
2.6e-7). The thresholds, 1e-5 on the loss and on every row's loss (relative to the largest), and
1e-4 per tensor (max |g_deepmpi - g_torch| / max |g_torch|), leave about 100x for other GEMM
backends, orderings and compositions, and still catch a subtle convention error: the exact (erf)
GELU in place of the tanh one gives 1e-3 on a gradient and 5e-5 on a row's loss, LayerNorm eps
1e-6 in place of 1e-5 gives 1e-3, RMSNorm without its eps 3e-3, the interleaved RoPE pairing
0.7, kv head h % KVH in place of h // (NH/KVH) 1.9; one gradient element moved by 1e-3 of its
tensor's largest is caught (DEEPMPI_REF_PERTURB in dump_model.cpp, and --expect-mismatch below).

Exit status: 0 every check passed; 1 a mismatch (or a malformed dump); 77 torch or numpy cannot
be imported (the ctest reports SKIPPED).
Run with Debian's interpreter, which has python3-torch: /usr/bin/python3 torch_reference.py DIR
"""
import argparse
import json
import math
import os
import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # the ctest shows SKIPPED (SKIP_RETURN_CODE 77), never Passed
    print(f"torch_reference: SKIPPED: cannot import torch/numpy with {sys.executable}: {e} "
          "(Debian: apt-get install python3-torch, or scripts/install-deps.sh --tests)")
    sys.exit(77)

LOSS_TOL = 1e-5
GRAD_TOL = 1e-4


class Cfg:
    """The composition, from the manifest's `model` (ModelConfig::to_json keys)."""

    def __init__(self, m):
        self.L = int(m["num_layers"])
        self.C = int(m["hidden_size"])
        self.NH = int(m["num_attention_heads"])
        self.KVH = int(m["num_query_groups"])
        self.V = int(m["vocab_size"])
        self.max_pos = int(m["max_position_embeddings"])
        self.norm = m["normalization"]
        self.eps = float(m["norm_epsilon"])
        self.positions = m["position_embedding_type"]
        self.base = float(m["rotary_base"])
        self.swiglu = bool(m["swiglu"])
        self.ffn = int(m["ffn_hidden_size"])
        self.untied = bool(m["untie_embeddings_and_output_weights"])
        self.bias = bool(m["add_bias_linear"])
        if self.norm not in ("LayerNorm", "RMSNorm"):
            raise ValueError(f"normalization {self.norm!r}")
        if self.positions not in ("learned_absolute", "rope", "none"):
            raise ValueError(f"position_embedding_type {self.positions!r}")
        if self.C % self.NH or self.NH % self.KVH:
            raise ValueError(f"hidden {self.C}, heads {self.NH}, kv heads {self.KVH} do not divide")
        self.hs = self.C // self.NH
        self.rms = self.norm == "RMSNorm"

    def describe(self):
        return (f"L={self.L} C={self.C} NH={self.NH} KVH={self.KVH} hs={self.hs} V={self.V} ffn={self.ffn} "
                f"{self.norm}(eps {self.eps:g}) positions={self.positions}"
                f"{'(base %g)' % self.base if self.positions == 'rope' else ''} "
                f"{'SwiGLU' if self.swiglu else 'GELU(tanh)'} {'untied' if self.untied else 'tied'} "
                f"bias={'on' if self.bias else 'off'}")


def expected_tensors(c):
    """(name, shape) of every parameter in deepmpi's model order, from the composition."""
    qkv = (c.NH + 2 * c.KVH) * c.hs
    w1 = 2 * c.ffn if c.swiglu else c.ffn
    t = [("wte", [c.V, c.C])]
    if c.positions == "learned_absolute":
        t.append(("wpe", [c.max_pos, c.C]))
    for layer in range(c.L):
        p = f"layers.{layer}."
        t.append((p + "ln1.weight", [c.C]))
        if not c.rms:
            t.append((p + "ln1.bias", [c.C]))
        t.append((p + "attn.qkv.weight", [qkv, c.C]))
        if c.bias:
            t.append((p + "attn.qkv.bias", [qkv]))
        t.append((p + "attn.proj.weight", [c.C, c.NH * c.hs]))
        if c.bias:
            t.append((p + "attn.proj.bias", [c.C]))
        t.append((p + "ln2.weight", [c.C]))
        if not c.rms:
            t.append((p + "ln2.bias", [c.C]))
        t.append((p + "mlp.fc.weight", [w1, c.C]))
        if c.bias:
            t.append((p + "mlp.fc.bias", [w1]))
        t.append((p + "mlp.proj.weight", [c.C, c.ffn]))
        if c.bias:
            t.append((p + "mlp.proj.bias", [c.C]))
    t.append(("lnf.weight", [c.C]))
    if not c.rms:
        t.append(("lnf.bias", [c.C]))
    if c.untied:
        t.append(("lm_head.weight", [c.V, c.C]))
    return t


def normalize(c, x, w, b):
    if c.rms:
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + c.eps) * w
    return F.layer_norm(x, (c.C,), w, b, c.eps)


def rotary(c, x):
    """x [B, T, H, hs]: dimension i and i + hs/2 rotated by t * base^(-2i/hs) at position t."""
    T, hs = x.shape[1], x.shape[3]
    half = hs // 2
    i = torch.arange(half, dtype=torch.float64)
    inv_freq = torch.pow(torch.tensor(c.base, dtype=torch.float64), -2.0 * i / hs)
    angle = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]  # [T, half]
    cos = angle.cos().to(x.dtype)[None, :, None, :]
    sin = angle.sin().to(x.dtype)[None, :, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def attention(c, x, p, pre):
    B, T, _ = x.shape
    nq, nkv = c.NH * c.hs, c.KVH * c.hs
    qkv = F.linear(x, p[pre + "attn.qkv.weight"], p.get(pre + "attn.qkv.bias"))
    q = qkv[..., :nq].reshape(B, T, c.NH, c.hs)
    k = qkv[..., nq:nq + nkv].reshape(B, T, c.KVH, c.hs)
    v = qkv[..., nq + nkv:].reshape(B, T, c.KVH, c.hs)
    if c.positions == "rope":
        q, k = rotary(c, q), rotary(c, k)
    q, k, v = (a.transpose(1, 2) for a in (q, k, v))  # [B, heads, T, hs]
    group = c.NH // c.KVH
    k = k.repeat_interleave(group, dim=1)  # query head h reads kv head h // group
    v = v.repeat_interleave(group, dim=1)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(c.hs)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    probs = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)
    y = (probs @ v).transpose(1, 2).reshape(B, T, nq)
    return F.linear(y, p[pre + "attn.proj.weight"], p.get(pre + "attn.proj.bias"))


def mlp(c, x, p, pre):
    h = F.linear(x, p[pre + "mlp.fc.weight"], p.get(pre + "mlp.fc.bias"))
    if c.swiglu:
        gate, up = h[..., :c.ffn], h[..., c.ffn:]
        a = F.silu(gate) * up
    else:
        a = F.gelu(h, approximate="tanh")
    return F.linear(a, p[pre + "mlp.proj.weight"], p.get(pre + "mlp.proj.bias"))


def forward(c, p, tokens, targets):
    """The mean loss (the one differentiated) and the per-row losses (0 on ignored rows)."""
    T = tokens.shape[1]
    x = F.embedding(tokens, p["wte"])
    if c.positions == "learned_absolute":
        x = x + p["wpe"][:T][None]
    for layer in range(c.L):
        pre = f"layers.{layer}."
        x = x + attention(c, normalize(c, x, p[pre + "ln1.weight"], p.get(pre + "ln1.bias")), p, pre)
        x = x + mlp(c, normalize(c, x, p[pre + "ln2.weight"], p.get(pre + "ln2.bias")), p, pre)
    y = normalize(c, x, p["lnf.weight"], p.get("lnf.bias"))
    logits = F.linear(y, p["lm_head.weight"] if c.untied else p["wte"]).reshape(-1, c.V)
    flat = targets.reshape(-1)
    loss = F.cross_entropy(logits, flat, ignore_index=-100)
    rows = F.cross_entropy(logits.detach(), flat, ignore_index=-100, reduction="none")
    return loss, rows


def read(path, dtype, count):
    a = np.fromfile(path, dtype=dtype)
    if a.size != count:
        raise ValueError(f"{path}: {a.size} values, the manifest says {count}")
    return a


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dump", help="directory written by dump_model")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                    help="precision of the PyTorch model (default float64; float32 for curiosity, "
                         "the tolerances are sized for float64)")
    ap.add_argument("--loss-tol", type=float, default=LOSS_TOL)
    ap.add_argument("--grad-tol", type=float, default=GRAD_TOL)
    ap.add_argument("--expect-mismatch", metavar="TENSOR",
                    help="self-test: the dump was made with DEEPMPI_REF_PERTURB=TENSOR; pass only when "
                         "exactly that tensor (and nothing else) is reported as a mismatch")
    args = ap.parse_args()

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    with open(os.path.join(args.dump, "manifest.json")) as f:
        man = json.load(f)
    if man.get("format") != "deepmpi-reference-dump" or man.get("byte_order") != "little":
        print(f"torch_reference: {args.dump}/manifest.json is not a little-endian deepmpi reference dump")
        return 1
    c = Cfg(man["model"])
    B, T, n = int(man["B"]), int(man["T"]), int(man["num_params"])
    dt = torch.float64 if args.dtype == "float64" else torch.float32
    print(f"torch_reference: {man['model'].get('name', '?')}: {c.describe()}; B={B} T={T} seed={man['seed']} "
          f"jitter={man['jitter']}; deepmpi {man['kernels']} ({man['gemm_backend']}, recompute "
          f"{man.get('recompute', 'none')}) vs torch {torch.__version__} "
          f"{args.dtype}")

    # the layout, derived here, against deepmpi's tensor list
    want = expected_tensors(c)
    have = man["tensors"]
    problems = []
    if [t["name"] for t in have] != [w[0] for w in want]:
        problems.append(f"tensor names/order differ:\n  deepmpi: {[t['name'] for t in have]}\n"
                        f"  torch:   {[w[0] for w in want]}")
    else:
        off = 0
        for t, (name, shape) in zip(have, want):
            if list(t["shape"]) != shape or t["numel"] != math.prod(shape) or t["offset"] != off:
                problems.append(f"{name}: deepmpi shape {t['shape']} numel {t['numel']} offset {t['offset']}, "
                                f"expected shape {shape} numel {math.prod(shape)} offset {off}")
            off += math.prod(shape)
        if off != n:
            problems.append(f"the tensors hold {off} values, num_params is {n}")
    if problems:
        print("torch_reference: FAIL: the parameter layout differs from the composition's:\n  " + "\n  ".join(problems))
        return 1

    params = read(os.path.join(args.dump, "params.f32"), "<f4", n)
    grads = read(os.path.join(args.dump, "grads.f32"), "<f4", n).astype(np.float64)
    rows_dm = read(os.path.join(args.dump, "losses.f32"), "<f4", B * T).astype(np.float64)
    tokens = torch.from_numpy(read(os.path.join(args.dump, "tokens.i32"), "<i4", B * T).astype(np.int64)).view(B, T)
    targets = torch.from_numpy(read(os.path.join(args.dump, "targets.i32"), "<i4", B * T).astype(np.int64)).view(B, T)
    p = {}
    for t in have:
        a = params[t["offset"]:t["offset"] + t["numel"]].reshape(t["shape"])
        p[t["name"]] = torch.tensor(a, dtype=dt, requires_grad=True)

    loss, rows = forward(c, p, tokens, targets)
    loss.backward()

    ok = True
    loss_dm, loss_th = float(man["loss"]), float(loss.item())
    loss_rel = abs(loss_dm - loss_th) / abs(loss_th)
    valid_th = int((targets != -100).sum())
    rows_th = rows.numpy().astype(np.float64)
    rows_rel = float(np.abs(rows_dm - rows_th).max() / max(np.abs(rows_th).max(), 1e-30))
    print(f"loss: deepmpi {loss_dm:.10f}  torch {loss_th:.10f}  rel diff {loss_rel:.2e} (tol {args.loss_tol:.0e}); "
          f"rows {man['valid_rows']} counted of {B * T} (torch {valid_th}); per-row losses max rel diff {rows_rel:.2e}")
    if loss_rel > args.loss_tol or rows_rel > args.loss_tol or int(man["valid_rows"]) != valid_th:
        print(f"MISMATCH: the loss (deepmpi {loss_dm!r}, torch {loss_th!r}, rel {loss_rel:.3e}; "
              f"per-row rel {rows_rel:.3e}; counted rows {man['valid_rows']} vs {valid_th})")
        ok = False

    # every tensor: max |g_deepmpi - g_torch| / max |g_torch|
    largest = max(float(p[t["name"]].grad.abs().max()) for t in have)
    print(f"{'tensor':<28} {'shape':>12} {'max|g_torch|':>13} {'max|diff|':>10} {'rel':>9}  worst element")
    worst_name, worst_rel, failed = None, -1.0, []
    for t in have:
        name = t["name"]
        g_th = p[name].grad.detach().to(torch.float64).numpy().reshape(-1)
        g_dm = grads[t["offset"]:t["offset"] + t["numel"]]
        diff = np.abs(g_dm - g_th)
        den = float(np.abs(g_th).max())
        note = ""
        if den == 0.0:  # a gradient identically zero here: compare against the model's largest
            den, note = largest, " (zero gradient in torch; relative to the largest of all tensors)"
        rel = float(diff.max()) / den
        j = int(diff.argmax())
        where = np.unravel_index(j, t["shape"])
        status = "ok" if rel <= args.grad_tol else "MISMATCH"
        shape = "x".join(str(s) for s in t["shape"])
        print(f"{name:<28} {shape:>12} {den:13.4e} {float(diff.max()):10.3e} {rel:9.2e}  "
              f"{list(map(int, where))} deepmpi {g_dm[j]:.6e} torch {g_th[j]:.6e}{note}  {status}")
        if rel > worst_rel:
            worst_name, worst_rel = name, rel
        if rel > args.grad_tol:
            failed.append((name, rel, list(map(int, where)), g_dm[j], g_th[j]))
    print(f"worst tensor: {worst_name} rel {worst_rel:.2e} (tol {args.grad_tol:.0e}) over {len(have)} tensors, "
          f"{n} parameters")
    for name, rel, where, a, b in failed:
        print(f"MISMATCH: gradient of {name} at {where}: deepmpi {a:.8e}, torch {b:.8e}; "
              f"max|diff| / max|g_torch| = {rel:.3e} > {args.grad_tol:.0e}")
    ok = ok and not failed

    if man.get("perturbed"):
        print(f"note: the dump was perturbed on purpose (DEEPMPI_REF_PERTURB): {man['perturbed']}")
    if args.expect_mismatch:
        pert = man.get("perturbed") or {}
        names = [f[0] for f in failed]
        if pert.get("tensor") != args.expect_mismatch or names != [args.expect_mismatch] or loss_rel > args.loss_tol:
            print(f"torch_reference: FAIL: expected exactly {args.expect_mismatch} to mismatch (the dump's "
                  f"perturbation: {pert or 'none'}); mismatched: {names or 'nothing'}")
            return 1
        print(f"torch_reference: PASS: the perturbation of {args.expect_mismatch} was caught, and only it")
        return 0
    print("torch_reference: PASS" if ok else "torch_reference: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
