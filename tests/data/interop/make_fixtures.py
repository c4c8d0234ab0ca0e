#!/usr/bin/python3
"""Writes the interop fixtures that tests/test_{safetensors,flax_msgpack,torch_format}.cpp read.

Run from anywhere with Debian's python3-numpy, python3-msgpack and python3-torch:
    /usr/bin/python3 tests/data/interop/make_fixtures.py
Each fixture <name> comes with <name>.expected.npz: the same arrays written by
numpy.savez (bfloat16 as xgrad's structured dtype [('bfloat16', '<u2')] of raw bits),
so the tests compare every value exactly against an independent writer.
"""
import collections
import json
import os
import struct

import msgpack
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
BF16 = np.dtype([('bfloat16', '<u2')])


def bf16_bits(values):
    """float32 values exactly representable in bfloat16 -> their 16-bit patterns."""
    f = np.asarray(values, dtype=np.float32)
    bits = f.view(np.uint32)
    assert ((bits & 0xFFFF) == 0).all(), 'values must be exact in bfloat16'
    return (bits >> 16).astype('<u2')


def as_bf16_struct(bits):
    out = np.zeros(bits.shape, dtype=BF16)
    out['bfloat16'] = bits
    return out


def save_expected(name, arrays):
    np.savez(os.path.join(HERE, name + '.expected.npz'), **arrays)


# ---------------------------------------------------------------- safetensors
def write_safetensors():
    """Byte by byte after the spec: u64 header length, JSON header, data buffer."""
    bf = bf16_bits([1.0, -2.5, 0.15625, 65280.0])
    tensors = collections.OrderedDict([
        ('b', np.array([True, False, True])),
        ('i32', np.array([[-2147483648, 7], [0, 2147483647]], dtype='<i4')),
        ('i64', np.array([-(2**63), 2**63 - 1, 5], dtype='<i8')),
        ('f16', np.array([1.0, -0.0, 65504.0, 2.0**-24], dtype='<f2')),
        ('bf16', bf),
        ('f32', np.arange(6, dtype='<f4').reshape(2, 3) / 4),
        ('f64', np.array(3.25, dtype='<f8')),
        ('empty', np.zeros((0, 4), dtype='<f4')),
        ('layer.0.weight', np.linspace(-1, 1, 12, dtype='<f8').reshape(3, 2, 2)),
    ])
    codes = {'b': 'BOOL', 'i32': 'I32', 'i64': 'I64', 'f16': 'F16', 'bf16': 'BF16', 'f32': 'F32',
             'f64': 'F64', 'empty': 'F32', 'layer.0.weight': 'F64'}
    header = {'__metadata__': {'format': 'pt', 'source': 'make_fixtures.py'}}
    data = b''
    # Deliberately not the reference writer's order: any order that tiles the buffer is valid.
    for name, arr in tensors.items():
        raw = arr.tobytes()
        header[name] = {'dtype': codes[name], 'shape': list(arr.shape),
                        'data_offsets': [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b' ' * ((8 - len(text) % 8) % 8)
    with open(os.path.join(HERE, 'tensors.safetensors'), 'wb') as f:
        f.write(struct.pack('<Q', len(text)) + text + data)
    expected = dict(tensors)
    expected['bf16'] = as_bf16_struct(bf)
    save_expected('tensors.safetensors', expected)


# ---------------------------------------------------------------- Flax msgpack
# The encoding of flax/serialization.py (msgpack_serialize), reproduced without JAX:
# ext 1 = ndarray, ext 3 = numpy scalar, each a nested packb((shape, dtype name, bytes));
# arrays over MAX_CHUNK_SIZE bytes as {'__msgpack_chunked_array__': True, 'shape': {'0': ..},
# 'chunks': {'0': 1-D array, ..}}; tuples/lists as dicts with '0', '1' keys (flax state dicts).
def ndarray_ext(shape, dtype_name, raw, code=1):
    return msgpack.ExtType(code, msgpack.packb((tuple(shape), dtype_name, raw), use_bin_type=True))


def np_ext(arr):
    return ndarray_ext(arr.shape, arr.dtype.name, arr.tobytes('C'))


def chunked(arr, max_chunk_size):
    chunksize = max(1, int(max_chunk_size / arr.dtype.itemsize))
    flat = arr.reshape(-1)
    chunks = [flat[i:i + chunksize] for i in range(0, flat.size, chunksize)]
    return {'__msgpack_chunked_array__': True,
            'shape': {str(i): d for i, d in enumerate(arr.shape)},
            'chunks': {str(i): np_ext(c) for i, c in enumerate(chunks)}}


def write_flax_msgpack():
    rng = np.random.default_rng(15)
    conv_kernel = rng.standard_normal((4, 9 * 2, 3)).astype(np.float32)
    conv_bias = rng.standard_normal((2, 2, 3)).astype(np.float32)
    dense_kernel = rng.standard_normal((12, 5)).astype(np.float64)
    big = np.arange(10, dtype=np.int32).reshape(2, 5)
    half = np.array([[0.5, -1.0], [2.0, 1024.0]], dtype=np.float16)
    bf = bf16_bits([1.0, -0.5, 3.0]).reshape(3)
    tree = {
        'params': {
            'ConvLocal_0': {'kernel': np_ext(conv_kernel), 'bias': np_ext(conv_bias)},
            'Dense_0': {'kernel': np_ext(dense_kernel),
                        'bias': ndarray_ext((5,), 'bfloat16', np.zeros(5, '<u2').tobytes())},
            'Big_0': {'table': chunked(big, 16)},  # 16-byte chunks: 4 int32 per chunk
            'Half_0': {'scale': np_ext(half), 'bf16': ndarray_ext((3,), 'bfloat16', bf.tobytes())},
        },
        'batch_stats': {'BatchNorm_0': {'mean': np_ext(np.array([0.25, -0.75], np.float32))}},
        'step': ndarray_ext((), 'int64', np.array(42, '<i8').tobytes(), code=3),
        'flags': np_ext(np.array([True, False])),
        'layers': {'0': {'w': np_ext(np.array([1, 2], np.int64))}, '1': {'w': np_ext(np.array([3], np.int64))}},
        'raw_list': [np_ext(np.array([7.0], np.float32)), np_ext(np.array([8.0], np.float32))],
        'lr': 0.125,
        'count': 3,
        'done': False,
    }
    with open(os.path.join(HERE, 'params.msgpack'), 'wb') as f:
        f.write(msgpack.packb(tree, use_bin_type=True))
    save_expected('params.msgpack', {
        'params.ConvLocal_0.kernel': conv_kernel, 'params.ConvLocal_0.bias': conv_bias,
        'params.Dense_0.kernel': dense_kernel,
        'params.Dense_0.bias': as_bf16_struct(np.zeros(5, '<u2')),
        'params.Big_0.table': big, 'params.Half_0.scale': half, 'params.Half_0.bf16': as_bf16_struct(bf),
        'batch_stats.BatchNorm_0.mean': np.array([0.25, -0.75], np.float32),
        'step': np.array(42, np.int64), 'flags': np.array([True, False]),
        'layers.0.w': np.array([1, 2], np.int64), 'layers.1.w': np.array([3], np.int64),
        'raw_list.0': np.array([7.0], np.float32), 'raw_list.1': np.array([8.0], np.float32),
        'lr': np.array(0.125, np.float64), 'count': np.array(3, np.int64), 'done': np.array(False),
    })


# ---------------------------------------------------------------- PyTorch
class SmallNet(torch.nn.Module):
    """A torchvision-style small CNN (features / avgpool / classifier, as VGG and AlexNet name them)."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, kernel_size=3, padding=1, bias=False),
            torch.nn.BatchNorm2d(4),
            torch.nn.ReLU(inplace=True),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(4, 6, kernel_size=3, padding=1),
            torch.nn.ReLU(inplace=True),
        )
        self.avgpool = torch.nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = torch.nn.Linear(6, 5)

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def to_numpy(t):
    if t.dtype == torch.bfloat16:
        return as_bf16_struct(t.view(torch.int16).numpy().view('<u2').copy())
    return t.detach().contiguous().numpy().copy()


def write_torch():
    torch.manual_seed(15)
    net = SmallNet()
    with torch.no_grad():  # non-default running statistics, so that the buffers are checked too
        net.features[1].running_mean.copy_(torch.tensor([0.5, -0.25, 1.0, 2.0]))
        net.features[1].running_var.copy_(torch.tensor([1.5, 0.75, 2.0, 0.5]))
        net.features[1].num_batches_tracked.fill_(7)
    sd = net.state_dict()
    torch.save(sd, os.path.join(HERE, 'small_cnn.pt'))
    save_expected('small_cnn.pt', {k: to_numpy(v) for k, v in sd.items()})

    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 8
    shared = torch.arange(10, dtype=torch.float64)
    views = collections.OrderedDict([
        ('transposed', base.t()),                 # non-contiguous: strides (1, 6)
        ('row', base[2]),                         # storage offset 12
        ('strided', base[1:, ::2]),               # offset 6, strides (6, 2)
        ('shared_a', shared[:6]),                 # two tensors over one storage, overlapping
        ('shared_b', shared[4:].view(3, 2)),
        ('scalar', torch.tensor(2.5, dtype=torch.float64)),
        ('empty', torch.zeros(0, 3)),
        ('b', torch.tensor([True, False, True])),
        ('i32', torch.tensor([-5, 2**31 - 1], dtype=torch.int32)),
        ('i64', torch.tensor([-(2**63), 2**40], dtype=torch.int64)),
        ('f16', torch.tensor([0.5, -65504.0], dtype=torch.float16)),
        ('bf16', torch.tensor([1.0, -3.0, 0.15625], dtype=torch.bfloat16)),
        ('param', torch.nn.Parameter(torch.tensor([[1.0, 2.0]]))),
    ])
    assert not views['transposed'].is_contiguous() and views['row'].storage_offset() == 12
    assert views['shared_a'].storage().data_ptr() == views['shared_b'].storage().data_ptr()
    torch.save(views, os.path.join(HERE, 'views.pt'))
    save_expected('views.pt', {k: to_numpy(v) for k, v in views.items()})


if __name__ == '__main__':
    write_safetensors()
    write_flax_msgpack()
    write_torch()
    print('wrote fixtures to', HERE)
