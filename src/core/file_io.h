// Whole-file reads, memory maps and crash-safe writes. Every failure throws seekr::Error
// naming the path and the system's reason.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace seekr {

// Reads the whole file into memory.
std::string read_file(const std::string& path);

// Writes path so that a crash leaves either the old contents or the new, never a mix.
void write_file_atomic(const std::string& path, std::string_view bytes);

// Streams a file into place without holding it in memory: the bytes go to
// "<path>.tmp.<pid>", and commit() flushes them to disk, renames the temp file over path
// and syncs the directory so the rename itself survives a crash. Destroying the writer
// without commit() removes the temp file and leaves any existing file at path untouched.
// One writer per path per process at a time: two would share the temp name.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t n);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  // Bytes written so far.
  uint64_t size() const { return written_; }
  void commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return tmp_path_; }

 private:
  std::string path_;
  std::string tmp_path_;
  int fd_ = -1;
  uint64_t written_ = 0;
};

// Read-only memory map of a whole file. An empty file maps to data() == nullptr, size() 0.
// The file must not be truncated while mapped (reads past the new end would fault).
class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void reset();
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// True if path names a regular file (after following symlinks).
bool file_exists(const std::string& path);
// True if path names a directory (after following symlinks).
bool is_directory(const std::string& path);
// Creates path and its missing parents; an existing directory is fine.
void make_dirs(const std::string& path);

}  // namespace seekr
