#!/usr/bin/python3
"""Writes the Keras 2 HDF5 fixtures of tests/test_keras_h5.cpp (needs numpy and h5py;
Debian: python3-h5py). Run from anywhere: /usr/bin/python3 tests/data/keras/make_keras_fixtures.py [output dir]
(default: this script's directory; tests/test_keras_h5.cpp regenerates them into a
temporary directory when h5py is present)

The files reproduce Keras 2's layout (tf_keras/saving/legacy/hdf5_format.py,
save_weights_to_hdf5_group and save_attributes_to_hdf5_group): the weights group has
`layer_names` (numpy bytes, as h5py stores Keras's lists: fixed-length strings), each
layer a group with `weight_names` and one dataset per weight at that relative path
("lc2d/kernel:0" under group "lc2d"); a layer without weights has
weight_names = np.asarray([]) (an empty float64 array). model.save("m.h5") puts the same
under `model_weights`, beside the model_config attribute; a too-large attribute is
split into layer_names0, layer_names1, ...

The LocallyConnected outputs follow Keras 2's math (backend.local_conv for
implementation 1, locally_connected_utils.local_conv_matmul with the
conv_kernel_mask for implementation 2), channels_last, VALID, plus the bias; the
inputs and expected outputs go to lc_reference.npz.
"""
import json
import os
import sys

import h5py
import numpy as np

HERE = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(15)


def names(items):
    return np.array([s.encode("utf8") for s in items])


def out_len(m, k, s):
    return (m - k) // s + 1


def local_conv_impl1(x, kernel, k, s, out_shape):
    # backend.local_conv, channels_last: positions row-major, each patch
    # x[:, o*s : o*s + k, :] flattened (kernel offsets, then channel fastest).
    n = len(k)
    rows = []
    for pos in np.ndindex(*out_shape):
        sl = (slice(None),) + tuple(slice(pos[d] * s[d], pos[d] * s[d] + k[d]) for d in range(n)) + (slice(None),)
        rows.append(x[sl].reshape(x.shape[0], -1))
    patches = np.stack(rows, 0)                        # (P, N, S*C)
    y = np.einsum("pni,pif->pnf", patches, kernel)     # batch_dot over positions
    return np.moveaxis(y, 1, 0).reshape((x.shape[0],) + tuple(out_shape) + (kernel.shape[-1],))


def kernel_mask(in_shape, k, s):
    # conv_utils.conv_kernel_mask, 'valid': input m feeds output o iff o*s <= m < o*s + k.
    out_shape = tuple(out_len(m, kk, ss) for m, kk, ss in zip(in_shape, k, s))
    mask = np.zeros(tuple(in_shape) + out_shape, bool)
    for o in np.ndindex(*out_shape):
        sl = tuple(slice(o[d] * s[d], o[d] * s[d] + k[d]) for d in range(len(k))) + o
        mask[sl] = True
    return mask


def local_conv_impl2(x, kernel, k, s):
    # local_conv_matmul: (mask * kernel) as a dense (M*C, O*F) matrix, channels_last.
    n = len(k)
    in_shape = x.shape[1:-1]
    mask = kernel_mask(in_shape, k, s)
    c = x.shape[-1]
    mask = mask.reshape(tuple(in_shape) + (1,) + mask.shape[n:] + (1,))
    dense = (kernel * mask).reshape(int(np.prod(in_shape)) * c, -1)
    out_shape = mask.shape[n + 1:-1]
    y = x.reshape(x.shape[0], -1) @ dense
    return y.reshape((x.shape[0],) + tuple(out_shape) + (kernel.shape[-1],))


def write_layer(group, layer, weights, chunks=1):
    g = group.create_group(layer)
    wn = [w for w, _ in weights]
    if not wn:
        g.attrs["weight_names"] = np.asarray([])
    elif chunks == 1:
        g.attrs["weight_names"] = names(wn)
    else:
        for i, part in enumerate(np.array_split(names(wn), chunks)):
            g.attrs["weight_names%d" % i] = part
    for w, value in weights:
        d = g.create_dataset(w, value.shape, dtype=value.dtype)
        if value.shape:
            d[:] = value
        else:
            d[()] = value


def write_weights_group(group, layers, chunks=1):
    order = [name for name, _ in layers]
    if chunks == 1:
        group.attrs["layer_names"] = names(order)
    else:
        for i, part in enumerate(np.array_split(names(order), chunks)):
            group.attrs["layer_names%d" % i] = part
    group.attrs["backend"] = b"tensorflow"
    group.attrs["keras_version"] = b"2.13.1"
    for name, weights in sorted(layers, key=lambda l: l[0]):  # Keras sorts the groups by name
        write_layer(group, name, weights, chunks=2 if (chunks > 1 and len(weights) > 1) else 1)
    write_layer(group, "top_level_model_weights", [])


def main():
    f32 = np.float32
    # LocallyConnected2D(4, (3, 2), strides=(2, 1)) on (5, 6, 3): O = (2, 5).
    x2 = rng.standard_normal((2, 5, 6, 3)).astype(f32)
    k2, s2, o2 = (3, 2), (2, 1), (2, 5)
    kernel2 = rng.standard_normal((10, 3 * 2 * 3, 4)).astype(f32)
    bias2 = rng.standard_normal((2, 5, 4)).astype(f32)
    y2 = local_conv_impl1(x2.astype(np.float64), kernel2.astype(np.float64), k2, s2, o2) + bias2
    # LocallyConnected1D(5, 3, strides=2) on (7, 2): O = 3.
    x1 = rng.standard_normal((2, 7, 2)).astype(f32)
    kernel1 = rng.standard_normal((3, 3 * 2, 5)).astype(f32)
    bias1 = rng.standard_normal((3, 5)).astype(f32)
    y1 = local_conv_impl1(x1.astype(np.float64), kernel1.astype(np.float64), (3,), (2,), (3,)) + bias1
    # implementation=2: the dense kernel (M..., C, O..., F); entries outside the
    # mask are random too (Keras keeps them; the mask zeroes them in the call).
    kernel2d = rng.standard_normal((5, 6, 3, 2, 5, 4)).astype(f32)
    y2d = local_conv_impl2(x2.astype(np.float64), kernel2d.astype(np.float64), k2, s2) + bias2
    # 1-D implementation 2, strides 3 on length 7 with k 2: O = 2 (strides 3, 4 and 5 all give 2).
    kernel1d = rng.standard_normal((7, 2, 2, 5)).astype(f32)
    bias1d = rng.standard_normal((2, 5)).astype(f32)
    y1d = local_conv_impl2(x1.astype(np.float64), kernel1d.astype(np.float64), (2,), (3,)) + bias1d

    layers = [
        ("lc2d", [("lc2d/kernel:0", kernel2), ("lc2d/bias:0", bias2)]),
        ("flatten", []),
        ("lc1d", [("lc1d/kernel:0", kernel1), ("lc1d/bias:0", bias1)]),
        ("lc2d_impl2", [("lc2d_impl2/kernel:0", kernel2d), ("lc2d_impl2/bias:0", bias2)]),
        ("lc1d_impl2", [("lc1d_impl2/kernel:0", kernel1d), ("lc1d_impl2/bias:0", bias1d)]),
    ]
    with h5py.File(os.path.join(HERE, "lc_weights.h5"), "w") as f:   # model.save_weights("w.h5")
        write_weights_group(f, layers)
    with h5py.File(os.path.join(HERE, "lc_model.h5"), "w") as f:     # model.save("m.h5"), chunked names
        f.attrs["keras_version"] = b"2.13.1"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"name": "lc"}}).encode("utf8")
        write_weights_group(f.create_group("model_weights"), layers, chunks=2)
        f.create_group("optimizer_weights")
    np.savez(os.path.join(HERE, "lc_reference.npz"), x2=x2, y2=y2.astype(f32), x1=x1, y1=y1.astype(f32),
             y2_impl2=y2d.astype(f32), y1_impl2=y1d.astype(f32))

    # implementation=3: the kernel is a vector over sorted(conv_kernel_idxs(...)), the
    # (output index, input index) pairs of the sparse (out_size, in_size) matrix, both
    # indices ravelled over (spatial..., channels) for channels_last and (channels,
    # spatial...) for channels_first; the output is x_flat @ A^T (local_conv_sparse_matmul).
    def sparse_reference(x, values, k, s, f, channels_last):
        n = len(k)
        if channels_last:
            in_sp, c = x.shape[1:-1], x.shape[-1]
        else:
            in_sp, c = x.shape[2:], x.shape[1]
        out_sp = tuple(out_len(m, kk, ss) for m, kk, ss in zip(in_sp, k, s))
        idxs = []
        for o in np.ndindex(*out_sp):
            for win in np.ndindex(*k):
                m = tuple(o[d] * s[d] + win[d] for d in range(n))
                for ci in range(c):
                    for fo in range(f):
                        if channels_last:
                            oi = np.ravel_multi_index(o + (fo,), out_sp + (f,))
                            ii = np.ravel_multi_index(m + (ci,), tuple(in_sp) + (c,))
                        else:
                            oi = np.ravel_multi_index((fo,) + o, (f,) + out_sp)
                            ii = np.ravel_multi_index((ci,) + m, (c,) + tuple(in_sp))
                        idxs.append((int(oi), int(ii)))
        idxs = sorted(idxs)
        assert len(values) == len(idxs)
        a = np.zeros((int(np.prod(out_sp)) * f, int(np.prod(in_sp)) * c))
        for (oi, ii), v in zip(idxs, values):
            a[oi, ii] = v
        y = x.reshape(x.shape[0], -1) @ a.T
        return y.reshape((x.shape[0],) + ((out_sp + (f,)) if channels_last else ((f,) + out_sp)))

    # LocallyConnected2D(4, (3, 2), strides=(2, 1), implementation=3) on x2 (channels_last), and
    # LocallyConnected1D(5, 3, strides=2, implementation=3, data_format="channels_first") on (2, 2, 7).
    kernel2s = rng.standard_normal(10 * 4 * 6 * 3).astype(f32)
    y2s = sparse_reference(x2.astype(np.float64), kernel2s.astype(np.float64), k2, s2, 4, True) + bias2
    x1f = np.ascontiguousarray(np.moveaxis(x1, -1, 1))
    # (use_bias=False: Keras adds a channels_first bias by reshaping (O, F) to (F, O), not transposing)
    kernel1s = rng.standard_normal(3 * 5 * 3 * 2).astype(f32)
    y1s = sparse_reference(x1f.astype(np.float64), kernel1s.astype(np.float64), (3,), (2,), 5, False)
    with h5py.File(os.path.join(HERE, "lc_impl3.h5"), "w") as f:
        write_weights_group(f, [("lc2d_impl3", [("lc2d_impl3/kernel:0", kernel2s), ("lc2d_impl3/bias:0", bias2)]),
                                ("lc1d_impl3", [("lc1d_impl3/kernel:0", kernel1s)])])
    np.savez(os.path.join(HERE, "lc_impl3_reference.npz"), x2=x2, y2=y2s.astype(f32), x1=x1f, y1=y1s.astype(f32))

    # Every dtype Keras / h5py writes, a scalar, a nested weight path and one
    # without the layer prefix.
    with h5py.File(os.path.join(HERE, "dtypes.h5"), "w") as f:
        f.attrs["layer_names"] = names(["mixed"])
        g = f.create_group("mixed")
        values = {
            "mixed/f16:0": np.array([1.5, -2.25, 65504.0], np.float16),
            "mixed/f32:0": np.array([[1.0, 2.5], [-3.0, 0.125]], np.float32),
            "mixed/f64:0": np.array([0.1, 1e300], np.float64),
            "mixed/i32:0": np.array([-7, 2147483647], np.int32),
            "mixed/i64:0": np.array([[-9007199254740993]], np.int64),
            "mixed/flag:0": np.array([True, False, True]),
            "mixed/step:0": np.float64(42.0),
            "mixed/sub/w:0": np.arange(6, dtype=np.float32).reshape(2, 3),
            "count:0": np.int64(3),
            "mixed/empty:0": np.zeros((0, 4), np.float32),
        }
        g.attrs["weight_names"] = names(list(values))
        for w, v in values.items():
            g.create_dataset(w, data=v)

    # The HDF5 features beyond h5py's defaults that xgrad's reader covers (core/io/hdf5_reader.hpp).
    # libver 'latest': superblock v3, "OHDR" object headers, link messages, a variable-length
    # layer_names (h5py's str), a chunked dataset stored as a single deflated chunk.
    with h5py.File(os.path.join(HERE, "latest.h5"), "w", libver="latest") as f:
        f.attrs.create("layer_names", ["dense", "norm"], dtype=h5py.string_dtype())
        g = f.create_group("dense")
        g.attrs["weight_names"] = names(["dense/kernel:0", "dense/bias:0"])
        g.create_dataset("dense/kernel:0", data=np.arange(12, dtype=np.float32).reshape(3, 4) / 8)
        g.create_dataset("dense/bias:0", data=np.array([0.5, -1.0, 2.0, 4.0], np.float32), chunks=(4,),
                         compression="gzip", shuffle=True)
        g = f.create_group("norm")
        g.attrs.create("weight_names", ["norm/gamma:0"], dtype=h5py.string_dtype())
        g.create_dataset("norm/gamma:0", data=np.array([1.0, 2.0], np.float64))
    # libver 'earliest' chunking: a v1 B-tree of chunks (more than one level) with edge
    # chunks, deflate + shuffle + fletcher32, a compact dataset, and a layer group with
    # enough members for a B-tree of symbol table nodes.
    with h5py.File(os.path.join(HERE, "chunked.h5"), "w") as f:
        f.attrs["layer_names"] = names(["conv", "wide"])
        g = f.create_group("conv")
        big = (np.arange(37 * 29, dtype=np.float32).reshape(37, 29) * 0.25 - 100).astype(np.float32)
        small = np.array([[1, -2, 3]], np.int64)
        g.attrs["weight_names"] = names(["conv/kernel:0", "conv/bias:0", "conv/count:0", "conv/big_endian:0"])
        g.create_dataset("conv/big_endian:0", data=np.array([1.5, -2.0, 1e30], ">f4"))
        g.create_dataset("conv/kernel:0", data=big, chunks=(2, 3), compression="gzip", shuffle=True, fletcher32=True)
        g.create_dataset("conv/bias:0", data=np.linspace(-1, 1, 50, dtype=np.float64), chunks=(7,))
        space = h5py.h5s.create_simple(small.shape)
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        dset = h5py.h5d.create(g.id, b"conv/count:0", h5py.h5t.STD_I64LE, space, dcpl=dcpl)
        dset.write(h5py.h5s.ALL, h5py.h5s.ALL, small)
        g = f.create_group("wide")
        wide = ["wide/w%03d:0" % i for i in range(40)]
        g.attrs["weight_names"] = names(wide)
        for i, w in enumerate(wide):
            g.create_dataset(w, data=np.array([i], np.int32))

    bad = os.path.join(HERE, "hostile")
    os.makedirs(bad, exist_ok=True)

    def keras_file(name, weights, layer="lc"):
        f = h5py.File(os.path.join(bad, name), "w")
        f.attrs["layer_names"] = names([layer])
        g = f.create_group(layer)
        g.attrs["weight_names"] = names(weights)
        return f, g

    f, g = keras_file("missing_dataset.h5", ["lc/kernel:0", "lc/bias:0"])
    g.create_dataset("lc/kernel:0", data=np.ones((2, 2), np.float32))
    f.close()
    with h5py.File(os.path.join(bad, "missing_layer.h5"), "w") as f:
        f.attrs["layer_names"] = names(["ghost"])
    f, g = keras_file("huge_chunked.h5", ["lc/kernel:0"])
    g.create_dataset("lc/kernel:0", shape=(1 << 40, 1 << 12), dtype=np.float32, chunks=(16, 16))
    f.close()
    f, g = keras_file("huge_contiguous.h5", ["lc/kernel:0"])
    g.create_dataset("lc/kernel:0", shape=(1 << 30, 1 << 8), dtype=np.float32)  # never written: no storage
    f.close()
    f, g = keras_file("uint8.h5", ["lc/kernel:0"])
    g.create_dataset("lc/kernel:0", data=np.arange(4, dtype=np.uint8))
    f.close()
    f, g = keras_file("complex.h5", ["lc/kernel:0"])
    g.create_dataset("lc/kernel:0", data=np.array([1 + 2j], np.complex64))
    f.close()
    f, g = keras_file("weight_is_group.h5", ["lc/kernel:0"])
    g.create_group("lc/kernel:0")
    f.close()
    f, g = keras_file("duplicate_key.h5", ["lc/kernel:0", "kernel:0"])
    g.create_dataset("lc/kernel:0", data=np.ones(2, np.float32))
    g.create_dataset("kernel:0", data=np.ones(2, np.float32))
    f.close()
    with h5py.File(os.path.join(bad, "not_keras.h5"), "w") as f:
        f.create_dataset("data", data=np.ones(3))
    with h5py.File(os.path.join(bad, "variable_length_names.h5"), "w") as f:  # h5py's str: not Keras's layout
        f.attrs.create("layer_names", ["lc"], dtype=h5py.string_dtype())
    with h5py.File(os.path.join(bad, "layer_names_int.h5"), "w") as f:
        f.attrs["layer_names"] = np.arange(3)
    # libver 'latest' structures the reader refuses with a typed error: a group with more
    # than 8 members keeps its links in a fractal heap (dense storage); a dataset of
    # several chunks is indexed by a fixed array.
    with h5py.File(os.path.join(bad, "dense_links.h5"), "w", libver="latest") as f:
        layers = ["l%d" % i for i in range(10)]
        f.attrs["layer_names"] = names(layers)
        for layer in layers:
            f.create_group(layer).attrs["weight_names"] = np.asarray([])
    with h5py.File(os.path.join(bad, "latest_chunked.h5"), "w", libver="latest") as f:
        f.attrs["layer_names"] = names(["lc"])
        g = f.create_group("lc")
        g.attrs["weight_names"] = names(["lc/kernel:0"])
        g.create_dataset("lc/kernel:0", data=np.ones((4, 4), np.float32), chunks=(2, 2))
    # A valid file cut short: the superblock survives, the data does not.
    with open(os.path.join(HERE, "lc_weights.h5"), "rb") as src:
        data = src.read()
    with open(os.path.join(bad, "truncated.h5"), "wb") as dst:
        dst.write(data[: len(data) // 2])


if __name__ == "__main__":
    main()
