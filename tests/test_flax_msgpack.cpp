// Flax msgpack checkpoints: a file encoded as flax.serialization does (ndarray and
// numpy-scalar extensions, chunked arrays, bfloat16, lists), exact bytes of the saved
// form, hostile inputs, and Python restoring what xgrad saves.
#include <doctest/doctest.h>

#include "interop_test_support.hpp"

using namespace xgrad;
using namespace io_test;
using namespace interop_test;

namespace {

std::string unhex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

// flax's ndarray extension (type 1) of [shape, dtype name, data], as msgpack bytes.
std::string ndarray_ext(const std::string& payload, int type = 1) {
  std::string out = "\xc7";
  out += static_cast<char>(payload.size());
  out += static_cast<char>(type);
  return out + payload;
}

std::map<std::string, Tensor> sample() {
  return {{"params.ConvLocal_0.kernel", arange(0, 24, 1, DType::Float32).reshape({2, 3, 4})},
          {"params.ConvLocal_0.bias", from_vector({-1, 0.5}, {2}, DType::Float64)},
          {"params.Dense_0.kernel",
           from_data(std::vector<bfloat16>{bfloat16::from_bits(0x3f80), bfloat16::from_bits(0xc000)}.data(), {2, 1})},
          {"params.Dense_0.bias", from_data(std::vector<half>{half::from_bits(0x3c00)}.data(), {1})},
          {"batch_stats.bn.mean", from_vector({1, 2, 3}, {3}, DType::Int32)},
          {"step", from_data(std::vector<std::int64_t>{INT64_MAX}.data(), {})},
          {"mask", from_vector({1, 0}, {2}, DType::Bool)},
          {"empty", zeros({0, 2}, DType::Float32)}};
}

}  // namespace

TEST_CASE("load_flax_msgpack reads Flax's encoding: nested maps, chunks, bfloat16, numpy scalars, lists") {
  const auto got = load_flax_msgpack(fixture("params.msgpack"));
  check_same(got, expected("params.msgpack"));
  CHECK(got.at("params.Big_0.table").shape() == Shape{2, 5});  // three 16-byte chunks reassembled
  CHECK(got.at("params.Big_0.table").to_vector() == std::vector<double>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  CHECK(got.at("params.Half_0.bf16").to_vector() == std::vector<double>{1.0, -0.5, 3.0});
  CHECK(got.at("step").dim() == 0);
  CHECK(got.at("step").item() == 42);
  CHECK(got.at("raw_list.1").item() == 8.0);
}

TEST_CASE("save_flax_msgpack writes the bytes flax.serialization.msgpack_serialize writes") {
  // Both strings printed by python3-msgpack for the same trees (see make_fixtures.py's encoder).
  CHECK(serialize_flax_msgpack({{"a.b", from_vector({1}, {1}, DType::Float32)}}) ==
        unhex("81a16181a162c71101939101a7666c6f61743332c4040000803f"));
  CHECK(serialize_flax_msgpack({{"s", from_data(std::vector<std::int64_t>{5}.data(), {})}}) ==
        unhex("81a173c71201939" "0a5696e743634c4080500000000000000"));
}

TEST_CASE("Flax msgpack round trips are bit-exact, chunked or not") {
  TempDir dir;
  const auto tensors = sample();
  save_flax_msgpack(dir.file("p.msgpack"), tensors);
  check_same(load_flax_msgpack(dir.file("p.msgpack")), tensors);
  // Chunks of 8 bytes split the 96-byte kernel into 12 pieces, as Flax does above 2**30.
  const std::string chunked = serialize_flax_msgpack(tensors, 8);
  CHECK(chunked.find("__msgpack_chunked_array__") != std::string::npos);
  check_same(parse_flax_msgpack(chunked), tensors);
  const std::map<std::string, Tensor> odd = {{"x", arange(0, 7, 1, DType::Float64)}};  // 56 bytes in chunks of 3 elements
  check_same(parse_flax_msgpack(serialize_flax_msgpack(odd, 24)), odd);
}

TEST_CASE("save_flax_msgpack refuses keys that cannot nest") {
  TempDir dir;
  const std::string path = dir.file("p.msgpack");
  save_flax_msgpack(path, {{"a", ones({1})}});
  const std::string before = read_bytes(path);
  CHECK_THROWS_WITH_AS(save_flax_msgpack(path, {{"a", ones({1})}, {"a.b", ones({1})}}),
                       doctest::Contains("key 'a.b' nests under another key that is a tensor"), ValueError);
  CHECK_THROWS_WITH_AS(save_flax_msgpack(path, {{"a..b", ones({1})}}), doctest::Contains("empty part"), ValueError);
  CHECK_THROWS_WITH_AS(save_flax_msgpack(path, {{"", ones({1})}}), doctest::Contains("empty part"), ValueError);
  CHECK_THROWS_AS(save_flax_msgpack(path, {{"u", Tensor()}}), ValueError);
  std::string deep = "k";
  for (int i = 0; i < 64; ++i) deep += ".k";  // 65 levels of maps: more than the reader accepts
  CHECK_THROWS_WITH_AS(save_flax_msgpack(path, {{deep, ones({1})}}), doctest::Contains("nest deeper than the 64"),
                       ValueError);
  CHECK(read_bytes(path) == before);
}

TEST_CASE("a tree the reader accepts saves only as deep as the reader accepts (fuzzer finding)") {
  // {"a": [[...[x]...]]}: 63 levels of maps and lists around an ndarray. Chunking the
  // leaf would add two levels, past kFlaxMaxDepth, so the saver refuses it.
  std::string deep = "a";
  for (int i = 0; i < 62; ++i) deep += ".0";
  const std::map<std::string, Tensor> tensors = {{deep, arange(0, 4, 1, DType::Float32)}};
  const std::string plain = serialize_flax_msgpack(tensors);
  check_same(parse_flax_msgpack(plain), tensors);
  CHECK_THROWS_WITH_AS(serialize_flax_msgpack(tensors, 4), doctest::Contains("nest deeper"), ValueError);
  std::string shallower = "a";
  for (int i = 0; i < 60; ++i) shallower += ".0";
  check_same(parse_flax_msgpack(serialize_flax_msgpack({{shallower, arange(0, 4, 1, DType::Float32)}}, 4)),
             {{shallower, arange(0, 4, 1, DType::Float32)}});
}

TEST_CASE("hostile msgpack files fail with an IOError naming the problem") {
  const std::string f32_one = ndarray_ext(unhex("939101a7666c6f61743332c4040000803f"));
  struct Case {
    const char* name;
    std::string bytes;
    const char* message;
  };
  const Case cases[] = {
      {"empty", "", "truncated msgpack"},
      {"truncated", unhex("81a161") + f32_one.substr(0, 10), "truncated msgpack"},
      {"trailing bytes", unhex("80") + "xyz", "3 unexpected bytes"},
      {"not a map", unhex("93010203"), "the top level is not a map"},
      {"huge claimed map", unhex("dfffffffff"), "truncated msgpack"},
      {"huge claimed array", unhex("81a161ddffffffff"), "truncated msgpack"},
      {"deep nesting", unhex("81a161") + std::string(100000, '\x91') + "\x01", "nest deeper than 64"},
      {"native complex", unhex("81a17a") + ndarray_ext(unhex("92cb3ff0000000000000cb0000000000000000"), 2),
       "entry 'z' of x.msgpack: a complex number"},
      {"unknown extension", unhex("81a17a") + ndarray_ext("abc", 9), "extension type 9"},
      {"unsupported dtype", unhex("81a175") + ndarray_ext(unhex("939101a575696e7438c40101")),
       "unsupported dtype 'uint8' in entry 'u'"},
      {"complex dtype", unhex("81a175") + ndarray_ext(unhex("939101a9636f6d706c65783634c4080000000000000000")),
       "unsupported dtype 'complex64'"},
      {"shape vs bytes", unhex("81a161") + ndarray_ext(unhex("939102a7666c6f61743332c4040000803f")),
       "float32 [2] does not match its 4 bytes"},
      {"overflowing shape",
       unhex("81a161") + ndarray_ext(unhex("9392cf7fffffffffffffffcf7fffffffffffffffa7666c6f61743332c400")),
       "does not match its 0 bytes"},
      {"bad ndarray payload", unhex("81a161") + ndarray_ext(unhex("92c0c0")), "expected [shape, dtype, bytes]"},
      {"string leaf", unhex("81a161a3616263"), "entry 'a' of x.msgpack: a string"},
      {"nil leaf", unhex("81a161c0"), "entry 'a' of x.msgpack: None"},
      {"non-string key", unhex("81c0c0"), "is not a string"},
      {"chunk keys", unhex("81a16183b95f5f6d73677061636b5f6368756e6b65645f61727261795f5fc3a57368617065"
                           "81a13104a66368756e6b7381a130") + f32_one,
       "keys must be \"0\" to \"0\", got '1'"},
      {"chunk shape", unhex("81a16183b95f5f6d73677061636b5f6368756e6b65645f61727261795f5fc3a57368617065"
                            "81a13005a66368756e6b7381a130") + f32_one,
       "shape [5] does not match 4 bytes of chunks"},
      {"duplicate key", unhex("82a161") + f32_one + unhex("a161") + f32_one, "duplicate key 'a'"},
  };
  TempDir dir;
  for (const Case& c : cases) {
    CAPTURE(c.name);
    CHECK_THROWS_WITH_AS(parse_flax_msgpack(c.bytes, "x.msgpack"), doctest::Contains(c.message), IOError);
  }
  write_bytes(dir.file("x.msgpack"), cases[1].bytes);
  CHECK_THROWS_AS(load_flax_msgpack(dir.file("x.msgpack")), IOError);
}

TEST_CASE("Python restores what save_flax_msgpack writes, with Flax's decoder") {
  if (!python_has("numpy msgpack")) {
    MESSAGE("skipped: /usr/bin/python3 with numpy and msgpack is not available");
    return;
  }
  TempDir dir;
  save_flax_msgpack(dir.file("p.msgpack"), sample());
  write_bytes(dir.file("c.msgpack"), serialize_flax_msgpack({{"w", arange(0, 10, 1, DType::Float32)}}, 12));
  // flax.serialization.msgpack_restore, reproduced without JAX (bfloat16 read as raw bits).
  const std::string script = R"(
import os, sys
import msgpack, numpy as np
d = sys.argv[1]
def ext_hook(code, data):
    assert code in (1, 3), code
    shape, name, buf = msgpack.unpackb(data, raw=True)
    dtype = np.dtype('<u2') if name == b'bfloat16' else np.dtype(name.decode())
    arr = np.frombuffer(buf, dtype=dtype).reshape(shape, order='C')
    return arr[()] if code == 3 else arr
def unchunk(t):
    if isinstance(t, dict):
        if '__msgpack_chunked_array__' in t:
            shape = tuple(t['shape'][str(i)] for i in range(len(t['shape'])))
            return np.concatenate([t['chunks'][str(i)] for i in range(len(t['chunks']))]).reshape(shape)
        return {k: unchunk(v) for k, v in t.items()}
    return t
def restore(name):
    return unchunk(msgpack.unpackb(open(os.path.join(d, name), 'rb').read(), ext_hook=ext_hook, raw=False))
t = restore('p.msgpack')
assert sorted(t) == ['batch_stats', 'empty', 'mask', 'params', 'step'], sorted(t)
k = t['params']['ConvLocal_0']['kernel']; assert k.dtype == np.float32 and k.shape == (2, 3, 4) and (k.ravel() == np.arange(24)).all()
assert t['params']['ConvLocal_0']['bias'].tolist() == [-1.0, 0.5]
assert t['params']['Dense_0']['kernel'].tolist() == [[0x3f80], [0xc000]]
assert t['params']['Dense_0']['bias'].dtype == np.float16 and t['params']['Dense_0']['bias'].tolist() == [1.0]
assert t['batch_stats']['bn']['mean'].dtype == np.int32 and t['batch_stats']['bn']['mean'].tolist() == [1, 2, 3]
assert t['step'].shape == () and t['step'] == 2**63 - 1
assert t['mask'].tolist() == [True, False] and t['empty'].shape == (0, 2)
c = restore('c.msgpack')['w']; assert c.dtype == np.float32 and c.tolist() == list(range(10)), c
)";
  CHECK(run_python(dir, script));
}
