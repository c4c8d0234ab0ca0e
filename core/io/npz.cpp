#include "core/io/npz.hpp"

#include "core/error.hpp"
#include "core/io/file_io.hpp"
#include "core/io/npy.hpp"
#include "core/io/zip.hpp"

namespace xgrad {

std::map<std::string, Tensor> parse_npz(std::string_view bytes, const std::string& what) {
  std::map<std::string, Tensor> arrays;
  read_zip(bytes, what, [&](const std::string& name, std::string_view contents) {
    const std::string key = name.ends_with(".npy") ? name.substr(0, name.size() - 4) : name;
    Tensor t = parse_npy(contents, describe_zip_entry(name, what));
    if (!arrays.emplace(key, t).second)
      throw IOError("duplicate key " + quoted_name(key) + " in " + what + " (again in " + quoted_name(name) +
                    ")");
  });
  return arrays;
}

std::map<std::string, Tensor> load_npz(const std::string& path) { return parse_npz(read_file(path), path); }

void save_npz(const std::string& path, const std::map<std::string, Tensor>& arrays, bool compress) {
  for (const auto& [key, t] : arrays)
    if (!t.defined()) throw ValueError("save_npz: array " + quoted_name(key) + " is undefined");
  AtomicFileWriter file(path);
  ZipWriter zip([&](std::string_view bytes) { file.write(bytes); }, path);
  for (const auto& [key, t] : arrays) zip.add(key + ".npy", serialize_npy(t), compress);
  zip.finish();
  file.commit();
}

}  // namespace xgrad
