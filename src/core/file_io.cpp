#include "core/file_io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "core/check.h"

namespace seekr {

namespace {

// Captures errno at the failure point, before any other call can overwrite it.
[[noreturn]] void throw_errno(std::string_view what, const std::string& path) {
  const int err = errno;
  throw Error(str_cat(what, " ", path, ": ", std::strerror(err)));
}

int open_or_throw(const std::string& path, int flags, mode_t mode, std::string_view what) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw_errno(what, path);
  return fd;
}

struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

size_t regular_file_size(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) throw_errno("cannot stat", path);
  SEEKR_REQUIRE(!S_ISDIR(st.st_mode), "cannot read ", path, ": is a directory");
  return static_cast<size_t>(st.st_size);
}

std::string parent_dir(const std::string& path) {
  const std::string parent = std::filesystem::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

}  // namespace

std::string read_file(const std::string& path) {
  const FdCloser f{open_or_throw(path, O_RDONLY, 0, "cannot open")};
  std::string out(regular_file_size(f.fd, path), '\0');
  size_t got = 0;
  for (;;) {
    // Read until EOF rather than trusting the size: files under /proc report 0 bytes, and
    // a file may grow between fstat and read.
    if (got == out.size()) out.resize(out.size() + (out.size() / 2) + 4096);
    const ssize_t r = ::read(f.fd, out.data() + got, out.size() - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot read", path);
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  out.resize(got);
  return out;
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicFileWriter w(path);
  w.write(bytes);
  w.commit();
}

AtomicFileWriter::AtomicFileWriter(std::string path)
    : path_(std::move(path)), tmp_path_(str_cat(path_, ".tmp.", ::getpid())) {
  // O_TRUNC rather than O_EXCL: a temp file left by a crashed process that had the same pid
  // (common in containers) must not block saving forever.
  fd_ = open_or_throw(tmp_path_, O_WRONLY | O_CREAT | O_TRUNC, 0666, "cannot create");
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_path_.c_str());
  }
}

void AtomicFileWriter::write(const void* data, size_t n) {
  SEEKR_CHECK(fd_ >= 0, "write after commit to ", path_);
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    // Linux moves at most ~2 GiB per write() call; larger requests come back partial.
    const ssize_t r = ::write(fd_, p, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot write", tmp_path_);
    }
    p += r;
    n -= static_cast<size_t>(r);
    written_ += static_cast<uint64_t>(r);
  }
}

void AtomicFileWriter::commit() {
  SEEKR_CHECK(fd_ >= 0, "commit twice to ", path_);
  if (::fsync(fd_) != 0) throw_errno("cannot sync", tmp_path_);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp_path_.c_str());
    throw Error(str_cat("cannot close ", tmp_path_, ": ", std::strerror(err)));
  }
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp_path_.c_str());
    throw Error(str_cat("cannot rename ", tmp_path_, " to ", path_, ": ", std::strerror(err)));
  }
  const std::string dir = parent_dir(path_);
  const FdCloser d{open_or_throw(dir, O_RDONLY | O_DIRECTORY, 0, "cannot open directory")};
  if (::fsync(d.fd) != 0) throw_errno("cannot sync directory", dir);
}

MappedFile::MappedFile(const std::string& path) : path_(path) {
  const FdCloser f{open_or_throw(path, O_RDONLY, 0, "cannot open")};
  size_ = regular_file_size(f.fd, path);
  if (size_ == 0) return;  // mmap of length 0 is EINVAL; an empty file is still valid
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, f.fd, 0);
  if (p == MAP_FAILED) {
    size_ = 0;
    throw_errno("cannot mmap", path);
  }
  data_ = static_cast<const uint8_t*>(p);
}

MappedFile::~MappedFile() {
  reset();
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : path_(std::move(o.path_)),
      data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    reset();
    path_ = std::move(o.path_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

void MappedFile::reset() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void make_dirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  SEEKR_REQUIRE(!ec, "cannot create directory ", path, ": ", ec.message());
  // create_directories reports success without error when path exists as a regular file.
  SEEKR_REQUIRE(is_directory(path), "cannot create directory ", path, ": not a directory");
}

}  // namespace seekr
