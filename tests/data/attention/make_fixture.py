#!/usr/bin/python3
"""Writes torch_mha.npz: PyTorch 1.13 nn.MultiheadAttention in float64, with its
weights converted to the parameter tree of flax.linen.MultiHeadDotProductAttention,
for tests/test_attention.cpp. Run with Debian's python3 (python3-torch):

    /usr/bin/python3 tests/data/attention/make_fixture.py

Layouts. PyTorch packs the three input projections in in_proj_weight [3E, E]
(rows: query, key, value; y = x W^T + b) and has out_proj.weight [E, E]. Flax's
DenseGeneral kernels are query/key/value.kernel [E_in, heads, head_dim] and
out.kernel [heads, head_dim, E_out], with head h owning features h*head_dim ..
(h+1)*head_dim - 1 in both. So
    query.kernel[i, h, d] = W_q[h * head_dim + d, i],   query.bias[h, d] = b_q[h * head_dim + d]
    out.kernel[h, d, o]   = W_o[o, h * head_dim + d],   out.bias = b_o.
Both scale the query by 1/sqrt(head_dim) before q.k. Masks are opposite: PyTorch's
boolean attn_mask and key_padding_mask are true where attention is NOT allowed,
Flax's mask is true where it is.

Each case prefix ("plain.", "masked.") holds the inputs, the Flax-layout
parameters, the output, the per-head attention weights [B, H, Lq, Lk], a
cotangent for the output and the gradients of sum(output * cotangent) with
respect to the inputs and to every Flax-layout parameter.
"""
import os

import numpy as np
import torch

torch.manual_seed(16)
torch.set_default_dtype(torch.float64)

E, H = 8, 2
D = E // H
B, LQ, LK = 2, 3, 5


def flax_params(mha):
    w_q, w_k, w_v = mha.in_proj_weight.detach().split(E, dim=0)
    b_q, b_k, b_v = mha.in_proj_bias.detach().split(E, dim=0)
    p = {}
    for name, w, b in (("query", w_q, b_q), ("key", w_k, b_k), ("value", w_v, b_v)):
        p[name + ".kernel"] = w.t().reshape(E, H, D)
        p[name + ".bias"] = b.reshape(H, D)
    p["out.kernel"] = mha.out_proj.weight.detach().t().reshape(H, D, E)
    p["out.bias"] = mha.out_proj.bias.detach().clone()
    return p


def flax_grads(mha):
    g_q, g_k, g_v = mha.in_proj_weight.grad.split(E, dim=0)
    gb_q, gb_k, gb_v = mha.in_proj_bias.grad.split(E, dim=0)
    g = {}
    for name, w, b in (("query", g_q, gb_q), ("key", g_k, gb_k), ("value", g_v, gb_v)):
        g["grad." + name + ".kernel"] = w.t().reshape(E, H, D)
        g["grad." + name + ".bias"] = b.reshape(H, D)
    g["grad.out.kernel"] = mha.out_proj.weight.grad.t().reshape(H, D, E)
    g["grad.out.bias"] = mha.out_proj.bias.grad.clone()
    return g


def case(prefix, masked):
    mha = torch.nn.MultiheadAttention(E, H, batch_first=True)
    with torch.no_grad():  # non-zero biases, so that the bias layout is tested too
        mha.in_proj_bias.normal_(0, 0.5)
        mha.out_proj.bias.normal_(0, 0.5)
    q = torch.randn(B, LQ, E, requires_grad=True)
    k = torch.randn(B, LK, E, requires_grad=True)
    v = torch.randn(B, LK, E, requires_grad=True)
    kwargs = {}
    flax_mask = np.ones((B, 1, LQ, LK))
    if masked:
        # A causal-like pattern (query i may see keys 0..i+2) and padding of the last
        # key in batch 1: every query keeps at least one key.
        attn_mask = torch.ones(LQ, LK, dtype=torch.bool).triu(diagonal=3)
        key_padding = torch.zeros(B, LK, dtype=torch.bool)
        key_padding[1, LK - 1] = True
        kwargs = {"attn_mask": attn_mask, "key_padding_mask": key_padding}
        keep = ~attn_mask[None, None, :, :] & ~key_padding[:, None, None, :]
        flax_mask = keep.double().numpy()
    out, weights = mha(q, k, v, need_weights=True, average_attn_weights=False, **kwargs)
    cotangent = torch.randn_like(out)
    (out * cotangent).sum().backward()
    entries = {
        "inputs_q": q.detach(), "inputs_k": k.detach(), "inputs_v": v.detach(),
        "mask": torch.from_numpy(flax_mask), "output": out.detach(), "weights": weights.detach(),
        "cotangent": cotangent, "grad.inputs_q": q.grad, "grad.inputs_k": k.grad, "grad.inputs_v": v.grad,
    }
    entries.update(flax_params(mha))
    entries.update(flax_grads(mha))
    return {prefix + name: t.numpy() for name, t in entries.items()}


arrays = {}
arrays.update(case("plain.", masked=False))
arrays.update(case("masked.", masked=True))
here = os.path.dirname(os.path.abspath(__file__))
np.savez(os.path.join(here, "torch_mha.npz"), **arrays)
print("wrote", len(arrays), "arrays to torch_mha.npz with torch", torch.__version__)
