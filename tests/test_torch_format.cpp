// PyTorch zip checkpoints: files torch.save wrote (a torchvision-style CNN, views,
// shared storages, every dtype), exact round trips, hostile pickles (disallowed
// globals, REDUCE of anything not allowed, bad opcodes, oversized views) and live
// round trips through torch.load(weights_only=True) and torch.save.
#include <doctest/doctest.h>

#include <filesystem>
#include <list>

#include "core/io/zip.hpp"
#include "interop_test_support.hpp"

using namespace xgrad;
using namespace io_test;
using namespace interop_test;

namespace {

std::string le(std::uint64_t v, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
  return out;
}

std::string text(const std::string& s) {
  std::string out = "X";
  out += le(s.size(), 4);
  return out + s;
}
std::string integer(std::int64_t v) { return "\x8a\x08" + le(static_cast<std::uint64_t>(v), 8); }  // LONG1
std::string int_tuple(const std::vector<std::int64_t>& v) {
  std::string out = "(";
  for (std::int64_t x : v) out += integer(x);
  return out + "t";
}

// {"x": _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())} as torch.save pickles it.
std::string tensor_pickle(const std::string& storage_class, const std::string& key, std::int64_t numel,
                          std::int64_t offset, const std::vector<std::int64_t>& size,
                          const std::vector<std::int64_t>& stride) {
  return std::string("\x80\x02") + "ccollections\nOrderedDict\n)R(" + text("x") + "ctorch._utils\n_rebuild_tensor_v2\n((" +
         text("storage") + "ctorch\n" + storage_class + "\n" + text(key) + text("cpu") + integer(numel) + "tQ" +
         integer(offset) + int_tuple(size) + int_tuple(stride) + "\x89" + "ccollections\nOrderedDict\n)RtRu.";
}

// A torch-style zip: archive/data.pkl, archive/data/<key> records, archive/version.
std::string torch_zip(const std::string& pickle, const std::map<std::string, std::string>& records = {},
                      const std::string& byteorder = "") {
  std::string out;
  ZipWriter zip([&](std::string_view b) { out += b; }, "test.pt");
  zip.add("archive/data.pkl", pickle, false);
  if (!byteorder.empty()) zip.add("archive/byteorder", byteorder, false);
  for (const auto& [key, bytes] : records) zip.add("archive/data/" + key, bytes, false, 64);
  zip.add("archive/version", "3\n", false);
  zip.finish();
  return out;
}

// A string literal with its NUL bytes.
template <std::size_t N>
std::string lit(const char (&s)[N]) {
  return std::string(s, N - 1);
}

std::string floats(std::initializer_list<float> v) { return raw<float>(v); }

std::map<std::string, Tensor> all_dtypes() {
  return {{"b", from_vector({1, 0, 1}, {3}, DType::Bool)},
          {"i32", from_vector({-2147483648.0, 7}, {2}, DType::Int32)},
          {"i64", from_data(std::vector<std::int64_t>{INT64_MIN, INT64_MAX}.data(), {2, 1})},
          {"f16", from_data(std::vector<half>{half::from_bits(0x3c00), half::from_bits(0xfc00)}.data(), {2})},
          {"bf16", from_data(std::vector<bfloat16>{bfloat16::from_bits(0x3f80), bfloat16::from_bits(0xc040)}.data(), {1, 2})},
          {"features.0.weight", arange(0, 54, 1, DType::Float32).reshape({2, 3, 3, 3})},
          {"f64", scalar(-3.25, DType::Float64)},
          {"empty", zeros({0, 5}, DType::Float32)},
          {"big", arange(0, 70000, 1, DType::Float32)}};  // numel past BININT2
}

}  // namespace

TEST_CASE("load_torch reads torch.save of a torchvision-style model's state dict") {
  const auto got = load_torch(fixture("small_cnn.pt"));
  check_same(got, expected("small_cnn.pt"));
  CHECK(got.at("features.0.weight").shape() == Shape{4, 3, 3, 3});  // PyTorch's OIHW, as stored
  CHECK(got.at("classifier.weight").shape() == Shape{5, 6});         // (out, in)
  CHECK(got.at("features.1.num_batches_tracked").dtype() == DType::Int64);
  CHECK(got.at("features.1.num_batches_tracked").item() == 7);
  CHECK(got.at("features.1.running_var").to_vector() == std::vector<double>{1.5, 0.75, 2.0, 0.5});
}

TEST_CASE("load_torch copies views, offsets, strides and shared storages out exactly") {
  const auto got = load_torch(fixture("views.pt"));
  check_same(got, expected("views.pt"));
  // base = arange(24).reshape(4, 6) / 8
  CHECK(got.at("transposed").shape() == Shape{6, 4});
  CHECK(got.at("transposed").at({1, 2}) == 13.0 / 8);
  CHECK(got.at("row").to_vector() == std::vector<double>{1.5, 1.625, 1.75, 1.875, 2.0, 2.125});
  CHECK(got.at("strided").to_vector() ==
        std::vector<double>{0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75});
  CHECK(got.at("shared_a").to_vector() == std::vector<double>{0, 1, 2, 3, 4, 5});
  CHECK(got.at("shared_b").to_vector() == std::vector<double>{4, 5, 6, 7, 8, 9});
  CHECK(got.at("param").to_vector() == std::vector<double>{1, 2});
  CHECK(got.at("i64").at({0}) == -9223372036854775808.0);
}

TEST_CASE("save_torch round-trips bit-exactly and lays records out as torch does") {
  TempDir dir;
  const auto tensors = all_dtypes();
  save_torch(dir.file("m.pt"), tensors);
  check_same(load_torch(dir.file("m.pt")), tensors);
  const std::string bytes = read_bytes(dir.file("m.pt"));
  CHECK(bytes == serialize_torch(tensors));
  CHECK(zip_entry_names(bytes, "m.pt").front() == "archive/data.pkl");
  std::list<std::string> inflated;
  const auto entries = read_zip_entries(bytes, "m.pt", inflated);
  CHECK(entries.at("archive/version") == "3\n");
  CHECK(entries.at("archive/byteorder") == "little");
  int records = 0;
  for (const auto& [name, contents] : entries)
    if (name.starts_with("archive/data/")) {
      ++records;
      CHECK((contents.data() - bytes.data()) % 64 == 0);
    }
  CHECK(records == static_cast<int>(tensors.size()));
}

TEST_CASE("hostile PyTorch checkpoints fail with an IOError and execute nothing") {
  TempDir dir;
  const std::string marker = dir.file("executed");
  const std::string twelve = floats({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
  struct Case {
    const char* name;
    std::string bytes;
    const char* message;
  };
  const Case cases[] = {
      {"os.system", torch_zip("\x80\x02" "cos\nsystem\n" + text("touch " + marker) + "\x85R."),
       "global 'os.system' is not allowed"},
      {"builtins.eval via STACK_GLOBAL",
       torch_zip("\x80\x04\x8c\x08" "builtins\x8c\x04" "eval\x93" + text("1") + "\x85R."),
       "global 'builtins.eval' is not allowed"},
      {"posix.system in a state dict",
       torch_zip(std::string("\x80\x02") + "ccollections\nOrderedDict\n)R(" + text("x") + "cposix\nsystem\n" +
                 text("touch " + marker) + "\x85Ru."),
       "global 'posix.system' is not allowed"},
      {"REDUCE of a storage class", torch_zip("\x80\x02" "ctorch\nFloatStorage\n)R."),
       "REDUCE of 'torch.FloatStorage' is not allowed"},
      {"REDUCE of an int", torch_zip("\x80\x02K\x01)R."), "REDUCE of an int, not a callable"},
      {"OrderedDict with arguments", torch_zip("\x80\x02" "ccollections\nOrderedDict\n]\x85R."),
       "called with arguments"},
      {"INST opcode", torch_zip("\x80\x02iposix\nsystem\n."), "unsupported pickle opcode 0x69"},
      {"protocol 0 string", torch_zip("\x80\x02S'x'\n."), "unsupported pickle opcode 0x53"},
      {"truncated string", torch_zip(lit("\x80\x02X\xff\x00\x00\x00" "ab")), "truncated"},
      {"no STOP", torch_zip("\x80\x02}"), "ends without STOP"},
      {"empty pickle", torch_zip(""), "ends without STOP"},
      {"stack underflow", torch_zip("\x80\x02s."), "stack underflow"},
      {"unset memo", torch_zip("\x80\x02h\x05."), "memo entry 5 is not set"},
      {"deep nesting", torch_zip("\x80\x02)" + std::string(100000, '\x85') + "."), "nest deeper than 64"},
      {"a list holding itself", torch_zip(lit("\x80\x02]q\x00h\x00" "a.")), "cannot hold itself"},
      {"a cycle through two lists", torch_zip(lit("\x80\x02]q\x00]q\x01h\x00" "ah\x00h\x01" "a.")),
       "already inside another one"},
      {"BUILD on a list", torch_zip("\x80\x02]}b."), "BUILD on a list"},
      {"not a dict", torch_zip("\x80\x02K\x01."), "holds an int, not a state dict"},
      {"huge LONG1", torch_zip("\x80\x02\x8a\x09" + std::string(9, '\x01') + "."), "more than int64"},
      {"stride-0 expansion",
       torch_zip(tensor_pickle("FloatStorage", "0", 1, 0, {1 << 20, 1 << 20}, {0, 0}), {{"0", floats({1})}}),
       "expand their storages"},
      {"view past the storage",
       torch_zip(tensor_pickle("FloatStorage", "0", 12, 10, {4}, {1}), {{"0", twelve}}),
       "reaches element 13 of storage '0', which has 12"},
      {"overflowing view",
       torch_zip(tensor_pickle("FloatStorage", "0", 12, 0, {3, 3}, {INT64_MAX, INT64_MAX}), {{"0", twelve}}),
       "the view overflows"},
      {"missing record", torch_zip(tensor_pickle("FloatStorage", "7", 1, 0, {1}, {1}), {{"0", floats({1})}}),
       "storage '7' has no record 'archive/data/7'"},
      {"record too small", torch_zip(tensor_pickle("FloatStorage", "0", 100, 0, {1}, {1}), {{"0", twelve}}),
       "claims 100 elements of float32, its record has 48 bytes"},
      {"unsupported dtype", torch_zip(tensor_pickle("ByteStorage", "0", 4, 0, {4}, {1}), {{"0", "abcd"}}),
       "entry 'x' of test.pt: a tensor of torch.ByteStorage"},
      {"unknown storage class", torch_zip(tensor_pickle("EvilStorage", "0", 4, 0, {4}, {1}), {{"0", "abcd"}}),
       "global 'torch.EvilStorage' is not allowed"},
      {"negative size", torch_zip(tensor_pickle("FloatStorage", "0", 12, 0, {-1}, {1}), {{"0", twelve}}),
       "negative size"},
      {"big-endian", torch_zip(tensor_pickle("FloatStorage", "0", 1, 0, {1}, {1}), {{"0", floats({1})}}, "big"),
       "byteorder 'big'"},
      {"no data.pkl", [] {
         std::string out;
         ZipWriter zip([&](std::string_view b) { out += b; }, "x");
         zip.add("w.npy", "x", false);
         zip.finish();
         return out;
       }(),
       "not a PyTorch checkpoint"},
      {"not a zip", "\x80\x02}.", "not a zip archive"},
      {"legacy format", std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e"),
       "the legacy format of torch < 1.6"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    CHECK_THROWS_WITH_AS(parse_torch(c.bytes, "test.pt"), doctest::Contains(c.message), IOError);
  }
  write_bytes(dir.file("evil.pt"), cases[0].bytes);
  CHECK_THROWS_AS(load_torch(dir.file("evil.pt")), IOError);
  CHECK_FALSE(std::filesystem::exists(marker));
}

TEST_CASE("a hand-made pickle with storage offset and strides rebuilds like torch") {
  // x = storage[1:].view(3, 3)[:, ::2]: offset 1, size (3, 2), stride (3, 2).
  const std::string bytes =
      torch_zip(tensor_pickle("DoubleStorage", "s", 10, 1, {3, 2}, {3, 2}),
                {{"s", raw<double>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9})}});
  const auto got = parse_torch(bytes, "hand.pt");
  CHECK(got.at("x").dtype() == DType::Float64);
  CHECK(got.at("x").shape() == Shape{3, 2});
  CHECK(got.at("x").to_vector() == std::vector<double>{1, 3, 4, 6, 7, 9});
}

TEST_CASE("load_torch reads a checkpoint whose records were deflated (re-zipped by another tool)") {
  const auto tensors = all_dtypes();
  std::list<std::string> inflated;
  const std::string stored = serialize_torch(tensors);
  const auto entries = read_zip_entries(stored, "m.pt", inflated);
  std::string deflated;
  ZipWriter zip([&](std::string_view b) { deflated += b; }, "re-zipped.pt");
  for (const std::string& name : zip_entry_names(stored, "m.pt")) zip.add(name, entries.at(name), true);
  zip.finish();
  CHECK(deflated.size() < stored.size());
  check_same(parse_torch(deflated, "re-zipped.pt"), tensors);
}

TEST_CASE("save_torch refuses undefined tensors and keeps the previous file") {
  TempDir dir;
  const std::string path = dir.file("m.pt");
  save_torch(path, {{"a", ones({2})}});
  const std::string before = read_bytes(path);
  CHECK_THROWS_AS(save_torch(path, {{"a", Tensor()}}), ValueError);
  CHECK(read_bytes(path) == before);
}

TEST_CASE("torch.load(weights_only=True) opens what save_torch writes; xgrad reads what torch.save writes") {
  if (!python_has("torch numpy")) {
    MESSAGE("skipped: /usr/bin/python3 with torch and numpy is not available");
    return;
  }
  TempDir dir;
  save_torch(dir.file("x.pt"), all_dtypes());
  const std::string script = R"(
import collections, os, sys
import numpy as np, torch
d = sys.argv[1]
sd = torch.load(os.path.join(d, 'x.pt'), weights_only=True)
assert isinstance(sd, collections.OrderedDict), type(sd)
assert sorted(sd) == sorted(['b', 'i32', 'i64', 'f16', 'bf16', 'features.0.weight', 'f64', 'empty', 'big']), sorted(sd)
assert sd['b'].dtype == torch.bool and sd['b'].tolist() == [True, False, True]
assert sd['i32'].dtype == torch.int32 and sd['i32'].tolist() == [-2**31, 7]
assert sd['i64'].dtype == torch.int64 and sd['i64'].tolist() == [[-2**63], [2**63 - 1]]
assert sd['f16'].dtype == torch.float16 and sd['f16'].tolist() == [1.0, float('-inf')]
assert sd['bf16'].dtype == torch.bfloat16 and sd['bf16'].tolist() == [[1.0, -3.0]]
w = sd['features.0.weight']; assert w.shape == (2, 3, 3, 3) and w.is_contiguous() and (w.flatten() == torch.arange(54.)).all()
assert sd['f64'].dtype == torch.float64 and sd['f64'].shape == () and sd['f64'].item() == -3.25
assert sd['empty'].shape == (0, 5)
assert (sd['big'] == torch.arange(70000.)).all()
# The other direction: protocol 4, a nested checkpoint dict, a view, a Parameter.
torch.manual_seed(0)
lin = torch.nn.Linear(3, 2)
base = torch.arange(6, dtype=torch.float32).reshape(2, 3)
ckpt = {'model': lin.state_dict(), 'view': base.t(), 'epoch': 3, 'p': torch.nn.Parameter(torch.ones(2))}
torch.save(ckpt, os.path.join(d, 'p4.pt'), pickle_protocol=4)
np.savez(os.path.join(d, 'p4.npz'), **{'model.weight': lin.weight.detach().numpy(), 'model.bias': lin.bias.detach().numpy(),
         'view': base.t().contiguous().numpy(), 'epoch': np.array(3, np.int64), 'p': np.ones(2, np.float32)})
)";
  REQUIRE(run_python(dir, script));
  check_same(load_torch(dir.file("p4.pt")), load_npz(dir.file("p4.npz")));
}
