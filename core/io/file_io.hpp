// Whole-file reading and crash-safe writing: what the serialisation formats use,
// and what a program uses for its own files (the Fashion-MNIST example's metrics.csv).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace xgrad {

// A regular file opened for positional reads. Errors are IOErrors naming the path.
class InputFile {
 public:
  // Opens `path`; IOError if it cannot be opened or is not a regular file.
  explicit InputFile(const std::string& path);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  // The file's size in bytes when it was opened.
  std::uint64_t size() const { return size_; }
  // Reads exactly n bytes at offset (the caller has checked offset + n <= size()).
  void read_at(std::uint64_t offset, void* dst, std::size_t n) const;

 private:
  std::string path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

// The whole contents of `path`; IOError naming the path on failure.
std::string read_file(const std::string& path);

// Writes `path` so that it holds either its previous contents or the complete new
// ones, whatever happens meanwhile: the bytes go to a temporary file in the same
// directory, which commit() fsyncs and renames over `path`. Destroying the writer
// without commit() (an exception mid-way) removes the temporary file.
class AtomicFileWriter {
 public:
  // Creates the temporary file next to `path`; IOError if it cannot.
  explicit AtomicFileWriter(const std::string& path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  // Appends `bytes` to the temporary file; IOError on a write error (e.g. disk full).
  void write(std::string_view bytes);
  // fsyncs and renames the temporary file over `path`; IOError if either fails (then `path` is unchanged).
  void commit();

 private:
  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
};

}  // namespace xgrad
