#!/usr/bin/python3
"""Reference values for tests/test_rnn.cpp from PyTorch 1.13 (Debian python3-torch).

Runs torch.nn.LSTM and torch.nn.GRU in float64 on random inputs and writes the
inputs, the weights converted to Flax's layout, and torch's outputs to
torch_reference.npz, so the C++ tests need no torch at run time.

Layout conversion (PyTorch -> Flax):
  * torch stacks the gates along rows of weight_ih [G*H, in] / weight_hh [G*H, H];
    Flax keeps one Dense per gate with kernel [in, H]: kernel = weight[gate].T.
  * LSTM gate order is i, f, g, o in both. torch has two biases (bias_ih, bias_hh)
    that are only ever summed; Flax has one on the recurrent side: hX.bias =
    bias_ih[X] + bias_hh[X].
  * GRU gate order in torch is r, z, n. torch: n = tanh(W_in x + b_in + r * (W_hn h + b_hn));
    Flax GRUCell: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)) -- the same place
    for the reset gate, so the functions match exactly. Flax puts the r and z biases
    on the input side: ir.bias = b_ir + b_hr, iz.bias = b_iz + b_hz; in.bias = b_in,
    hn.bias = b_hn; hr and hz have no bias.
  * A bidirectional torch layer with packed sequences reverses each sequence within
    its length, as Flax's flip_sequences does; torch zeroes the outputs at padding
    (Flax does not), so only valid steps are compared there.

Regenerate: /usr/bin/python3 tests/data/rnn/make_torch_reference.py
"""
import os

import numpy as np
import torch

torch.manual_seed(16)
torch.set_default_dtype(torch.float64)
B, T, I, H = 3, 5, 4, 6
out = {}


def lstm_to_flax(prefix, w_ih, w_hh, b_ih, b_hh):
    for k, gate in enumerate("ifgo"):
        rows = slice(k * H, (k + 1) * H)
        out[f"{prefix}i{gate}.kernel"] = w_ih[rows].T.copy()
        out[f"{prefix}h{gate}.kernel"] = w_hh[rows].T.copy()
        out[f"{prefix}h{gate}.bias"] = (b_ih[rows] + b_hh[rows]).copy()


def gru_to_flax(prefix, w_ih, w_hh, b_ih, b_hh):
    for k, gate in enumerate("rzn"):
        rows = slice(k * H, (k + 1) * H)
        out[f"{prefix}i{gate}.kernel"] = w_ih[rows].T.copy()
        out[f"{prefix}h{gate}.kernel"] = w_hh[rows].T.copy()
    r, z, n = (slice(k * H, (k + 1) * H) for k in range(3))
    out[f"{prefix}ir.bias"] = b_ih[r] + b_hh[r]
    out[f"{prefix}iz.bias"] = b_ih[z] + b_hh[z]
    out[f"{prefix}in.bias"] = b_ih[n].copy()
    out[f"{prefix}hn.bias"] = b_hh[n].copy()


def params(module, suffix=""):
    return [getattr(module, f"{name}_l0{suffix}").detach().numpy() for name in
            ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


x = torch.randn(B, T, I)
h0 = torch.randn(1, B, H)
c0 = torch.randn(1, B, H)
out["x"] = x.numpy()
out["h0"] = h0[0].numpy()
out["c0"] = c0[0].numpy()

# One-directional LSTM with a given initial carry.
lstm = torch.nn.LSTM(I, H, batch_first=True)
y, (hn, cn) = lstm(x, (h0, c0))
lstm_to_flax("lstm/cell.", *params(lstm))
out["lstm/y"], out["lstm/hn"], out["lstm/cn"] = y.detach().numpy(), hn[0].detach().numpy(), cn[0].detach().numpy()

# One-directional GRU.
gru = torch.nn.GRU(I, H, batch_first=True)
y, hn = gru(x, h0)
gru_to_flax("gru/cell.", *params(gru))
out["gru/y"], out["gru/hn"] = y.detach().numpy(), hn[0].detach().numpy()

# Bidirectional LSTM and GRU over padded sequences (zero initial carry).
lengths = torch.tensor([5, 2, 4])
out["lengths"] = lengths.numpy().astype(np.int64)
for name, cls, convert in (("bilstm", torch.nn.LSTM, lstm_to_flax), ("bigru", torch.nn.GRU, gru_to_flax)):
    rnn = cls(I, H, batch_first=True, bidirectional=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    y_packed, state = rnn(packed)
    y, _ = torch.nn.utils.rnn.pad_packed_sequence(y_packed, batch_first=True, total_length=T)
    hn = state[0] if isinstance(state, tuple) else state
    convert(f"{name}/forward_rnn.cell.", *params(rnn))
    convert(f"{name}/backward_rnn.cell.", *params(rnn, "_reverse"))
    out[f"{name}/y"] = y.detach().numpy()
    out[f"{name}/hn_forward"], out[f"{name}/hn_backward"] = hn[0].detach().numpy(), hn[1].detach().numpy()
    if isinstance(state, tuple):
        out[f"{name}/cn_forward"], out[f"{name}/cn_backward"] = state[1][0].detach().numpy(), state[1][1].detach().numpy()

np.savez(os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_reference.npz"),
         **{k: np.ascontiguousarray(v) for k, v in out.items()})
print(f"wrote {len(out)} arrays")
