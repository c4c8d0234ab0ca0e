// .npz archives: round trips, names as plain keys, and damaged or hostile zip structure.
#include <doctest/doctest.h>

#include "core/io/zip.hpp"
#include "io_test_support.hpp"

using namespace xgrad;
using namespace io_test;

namespace {

std::string zip_of(const std::vector<std::pair<std::string, std::string>>& entries, bool compress = false) {
  std::string out;
  ZipWriter writer([&](std::string_view bytes) { out += bytes; }, "mem.npz");
  for (const auto& [name, contents] : entries) writer.add(name, contents, compress);
  writer.finish();
  return out;
}

std::string le(std::uint64_t v, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
  return out;
}
void set_le(std::string& bytes, std::size_t at, std::uint64_t v, int n) { bytes.replace(at, n, le(v, n)); }
std::uint64_t get_le(const std::string& bytes, std::size_t at, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i)
    v |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[at + i])) << (8 * i);
  return v;
}

// Offsets of the (first) central directory record and of the end record (no comment).
std::size_t central(const std::string& zip) { return zip.find("PK\x01\x02"); }
std::size_t end_record(const std::string& zip) { return zip.size() - 22; }

const std::string kSupported = "xgrad reads bool, int32, int64, float16, bfloat16, float32, float64";

std::map<std::string, Tensor> sample_arrays() {
  const half f2[] = {half::from_bits(0x7c00), half::from_bits(0x0001), half::from_bits(0x7e01)};
  const bfloat16 bf[] = {bfloat16::from_bits(0xff80), bfloat16::from_bits(0x3f81)};
  return {{"b", from_vector({1, 0}, {2}, DType::Bool)},
          {"i4", from_vector({-3, 4}, {1, 2}, DType::Int32)},
          {"i8", arange(6, DType::Int64).reshape({2, 3})},
          {"f2", from_data(f2, {3})},
          {"bf16", from_data(bf, {2, 1})},
          {"f4", zeros({64, 64}, DType::Float32)},
          {"f8", scalar(-0.0, DType::Float64)},
          {"empty", zeros({0, 2}, DType::Float64)}};
}

void check_same_arrays(const std::map<std::string, Tensor>& got, const std::map<std::string, Tensor>& want) {
  REQUIRE(got.size() == want.size());
  for (const auto& [key, t] : want) {
    CAPTURE(key);
    REQUIRE(got.count(key) == 1);
    check_identical(got.at(key), t);
  }
}

}  // namespace

TEST_CASE("npz round trip, stored and deflated, keeps every array bit-exact") {
  TempDir dir;
  const auto arrays = sample_arrays();
  save_npz(dir.file("stored.npz"), arrays);
  save_npz(dir.file("deflated.npz"), arrays, /*compress=*/true);
  check_same_arrays(load_npz(dir.file("stored.npz")), arrays);
  check_same_arrays(load_npz(dir.file("deflated.npz")), arrays);
  CHECK(read_bytes(dir.file("deflated.npz")).size() * 4 < read_bytes(dir.file("stored.npz")).size());
  // Same arrays, same bytes (fixed timestamps).
  save_npz(dir.file("again.npz"), arrays);
  CHECK(read_bytes(dir.file("again.npz")) == read_bytes(dir.file("stored.npz")));
  save_npz(dir.file("none.npz"), {});
  CHECK(load_npz(dir.file("none.npz")).empty());
}

TEST_CASE("npz entry names are only keys, never paths") {
  TempDir dir;
  const std::map<std::string, Tensor> arrays = {{"../escape", scalar(1)},
                                                {"/etc/xgrad-abs", scalar(2)},
                                                {"a/b/c", scalar(3)},
                                                {"x.npy", scalar(4)},
                                                {"gr\xc3\xbc\xc3\x9f", scalar(5)}};
  save_npz(dir.file("keys.npz"), arrays);
  check_same_arrays(load_npz(dir.file("keys.npz")), arrays);
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path()),
                      std::filesystem::directory_iterator()) == 1);
  CHECK_FALSE(std::filesystem::exists(dir.path().parent_path() / "escape.npy"));
  // Keys drop exactly one ".npy"; entries without it keep their name.
  const auto loaded =
      parse_npz(zip_of({{"plain", serialize_npy(scalar(6))}, {"w.npy", serialize_npy(scalar(7))}}));
  CHECK(loaded.at("plain").item() == 6);
  CHECK(loaded.at("w").item() == 7);
}

TEST_CASE("npz saving is atomic and validates before touching the file") {
  TempDir dir;
  const std::string path = dir.file("m.npz");
  save_npz(path, {{"w", scalar(1)}});
  CHECK_THROWS_WITH_AS(save_npz(path, {{"v", scalar(2)}, {"w", Tensor()}}),
                       "save_npz: array 'w' is undefined", ValueError);
  CHECK(load_npz(path).at("w").item() == 1);
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path()),
                      std::filesystem::directory_iterator()) == 1);
}

TEST_CASE("npz errors name the archive, the entry and the problem") {
  const std::string stored = zip_of({{"a.npy", serialize_npy(arange(4, DType::Int32))}});
  const std::string deflated = zip_of({{"a.npy", serialize_npy(zeros({256}, DType::Float64))}}, true);
  const std::size_t cd = central(stored), end = end_record(stored);

  CHECK_THROWS_WITH_AS(parse_npz("hello", "mem.npz"),
                       "not a zip archive: mem.npz has no end-of-central-directory record", IOError);
  CHECK_THROWS_WITH_AS(parse_npz(stored.substr(0, stored.size() - 1), "mem.npz"),
                       "not a zip archive: mem.npz has no end-of-central-directory record", IOError);
  CHECK_THROWS_WITH_AS(parse_npz(serialize_npy(scalar(1)), "mem.npz"),
                       "not a zip archive: mem.npz has no end-of-central-directory record", IOError);

  SUBCASE("a damaged entry fails its CRC") {
    std::string bad = stored;
    bad[cd - 1] ^= 0x01;
    const std::string message = error_message([&] { parse_npz(bad, "mem.npz"); });
    char stored_crc[11];
    std::snprintf(stored_crc, sizeof stored_crc, "0x%08x", static_cast<unsigned>(get_le(stored, 14, 4)));
    CHECK(message.starts_with("CRC mismatch in entry 'a.npy' of mem.npz: stored " + std::string(stored_crc) +
                              ", computed 0x"));
    CHECK_THROWS_AS(parse_npz(bad, "mem.npz"), IOError);
  }
  SUBCASE("damaged deflate data") {
    std::string bad = deflated;
    bad[central(deflated) - 3] ^= 0x5a;
    CHECK_THROWS_AS(parse_npz(bad, "mem.npz"), IOError);
    CHECK(error_message([&] { parse_npz(bad, "mem.npz"); }).find("entry 'a.npy'") != std::string::npos);
  }
  SUBCASE("sizes and counts are checked against the archive before allocating") {
    std::string bad = stored;
    set_le(bad, end + 8, 0xffff, 2);
    set_le(bad, end + 10, 0xffff, 2);
    CHECK_THROWS_WITH_AS(
        parse_npz(bad, "mem.npz"),
        "corrupt zip archive mem.npz: 65535 entries cannot fit in a central directory of 51 bytes", IOError);
    bad = stored;
    set_le(bad, end + 16, 0xfffffff0, 4);
    CHECK_THROWS_WITH_AS(parse_npz(bad, "mem.npz"),
                         "corrupt zip archive mem.npz: the central directory lies outside the archive",
                         IOError);
    bad = stored;
    set_le(bad, cd + 20, 0x7fffffff, 4);
    set_le(bad, cd + 24, 0x7fffffff, 4);
    CHECK_THROWS_WITH_AS(parse_npz(bad, "mem.npz"),
                         "corrupt zip archive mem.npz: entry 'a.npy' extends past its space in the archive",
                         IOError);
    bad = deflated;
    const std::size_t dcd = central(deflated);
    set_le(bad, dcd + 24, 0xfffffff0, 4);
    CHECK_THROWS_WITH_AS(
        parse_npz(bad, "mem.npz"),
        ("corrupt zip archive mem.npz: entry 'a.npy' claims 4294967280 bytes from " +
         std::to_string(get_le(deflated, dcd + 20, 4)) + " compressed bytes, more than deflate can produce")
            .c_str(),
        IOError);
    const std::uint64_t size = get_le(deflated, dcd + 24, 4);
    set_le(bad, dcd + 24, size - 1, 4);
    CHECK_THROWS_WITH_AS(parse_npz(bad, "mem.npz"),
                         ("corrupt zip archive mem.npz: entry 'a.npy' inflates to more than its declared " +
                          std::to_string(size - 1) + " bytes")
                             .c_str(),
                         IOError);
    set_le(bad, dcd + 24, size + 1, 4);
    CHECK_THROWS_WITH_AS(parse_npz(bad, "mem.npz"),
                         ("corrupt zip archive mem.npz: entry 'a.npy' inflates to fewer than its declared " +
                          std::to_string(size + 1) + " bytes")
                             .c_str(),
                         IOError);
  }
  SUBCASE("unsupported features") {
    std::string bad = stored;
    set_le(bad, cd + 10, 12, 2);
    CHECK_THROWS_WITH_AS(
        parse_npz(bad, "mem.npz"),
        "unsupported zip archive mem.npz: entry 'a.npy' uses compression method 12 (xgrad reads "
        "stored and deflated entries)",
        IOError);
    bad = stored;
    set_le(bad, cd + 8, 1, 2);
    CHECK_THROWS_WITH_AS(parse_npz(bad, "mem.npz"),
                         "unsupported zip archive mem.npz: entry 'a.npy' is encrypted", IOError);
    bad = stored;
    set_le(bad, end + 4, 1, 2);
    CHECK_THROWS_WITH_AS(parse_npz(bad, "mem.npz"),
                         "unsupported zip archive mem.npz: multi-disk archives are not supported", IOError);
  }
  SUBCASE("local headers must agree with the directory") {
    std::string bad = stored;
    bad[30] = 'b';
    CHECK_THROWS_WITH_AS(
        parse_npz(bad, "mem.npz"),
        "corrupt zip archive mem.npz: the local header of entry 'a.npy' names a different entry", IOError);
    bad = stored;
    bad[0] = 'X';
    CHECK_THROWS_WITH_AS(parse_npz(bad, "mem.npz"),
                         "corrupt zip archive mem.npz: bad local header for entry 'a.npy'", IOError);
  }
  SUBCASE("two directory records sharing data (a zip bomb pattern) are refused") {
    const std::string record = stored.substr(cd, end - cd);
    std::string eocd = stored.substr(end);
    set_le(eocd, 8, 2, 2);
    set_le(eocd, 10, 2, 2);
    set_le(eocd, 12, 2 * record.size(), 4);
    const std::string bomb = stored.substr(0, cd) + record + record + eocd;
    CHECK_THROWS_WITH_AS(parse_npz(bomb, "mem.npz"),
                         "corrupt zip archive mem.npz: entry 'a.npy' overlaps entry 'a.npy'", IOError);
  }
  SUBCASE("entries must be valid .npy and keys unique") {
    CHECK_THROWS_WITH_AS(
        parse_npz(zip_of({{"a.npy", "not numpy"}}), "mem.npz"),
        "bad magic in entry 'a.npy' of mem.npz: not an .npy file (it must start with \"\\x93NUMPY\")",
        IOError);
    CHECK_THROWS_WITH_AS(
        parse_npz(zip_of({{"c.npy",
                           npy_bytes("{'descr': '<c8', 'fortran_order': False, 'shape': ()}", "12345678")}}),
                  "mem.npz"),
        ("unsupported dtype '<c8' in entry 'c.npy' of mem.npz: " + kSupported).c_str(), IOError);
    CHECK_THROWS_WITH_AS(
        parse_npz(zip_of({{"a.npy", serialize_npy(scalar(1))}, {"a", serialize_npy(scalar(2))}}), "mem.npz"),
        "duplicate key 'a' in mem.npz (again in 'a')", IOError);
    CHECK_THROWS_WITH_AS(
        parse_npz(zip_of({{"a\n\x01.npy", "x"}}), "mem.npz"),
        "bad magic in entry 'a\\x0a\\x01.npy' of mem.npz: not an .npy file (it must start with "
        "\"\\x93NUMPY\")",
        IOError);
  }
}

TEST_CASE("npz reads ZIP64 records (as zipfile writes for large arrays)") {
  const Tensor t = arange(5, DType::Int64);
  const std::string plain = zip_of({{"z.npy", serialize_npy(t)}});
  const std::size_t cd = central(plain);
  // Central record with every 32-bit field deferred to a ZIP64 extra field.
  std::string record = plain.substr(cd, 46);
  const std::uint64_t csize = get_le(record, 20, 4), size = get_le(record, 24, 4);
  set_le(record, 20, 0xffffffff, 4);
  set_le(record, 24, 0xffffffff, 4);
  set_le(record, 42, 0xffffffff, 4);
  set_le(record, 30, 28, 2);
  record += "z.npy" + le(1, 2) + le(24, 2) + le(size, 8) + le(csize, 8) + le(0, 8);
  const std::string zip64_end = le(0x06064b50, 4) + le(44, 8) + le(45, 2) + le(45, 2) + le(0, 4) + le(0, 4) +
                                le(1, 8) + le(1, 8) + le(record.size(), 8) + le(cd, 8);
  const std::string locator = le(0x07064b50, 4) + le(0, 4) + le(cd + record.size(), 8) + le(1, 4);
  const std::string end = le(0x06054b50, 4) + le(0, 2) + le(0, 2) + le(0xffff, 2) + le(0xffff, 2) +
                          le(0xffffffff, 4) + le(0xffffffff, 4) + le(0, 2);
  const std::string zip64 = plain.substr(0, cd) + record + zip64_end + locator + end;
  check_identical(parse_npz(zip64).at("z"), t);

  std::string short_field = zip64;
  set_le(short_field, cd + 46 + 5 + 2, 16, 2);  // the extra claims 16 bytes for three 8-byte values
  CHECK_THROWS_WITH_AS(parse_npz(short_field, "mem.npz"),
                       "corrupt zip archive mem.npz: short ZIP64 field in the record of entry 'z.npy'",
                       IOError);
}
