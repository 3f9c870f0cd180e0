// Invariant checks and user-facing errors.
//
// SEEKR_CHECK guards internal invariants: a failure is a bug, so it prints file:line and
// aborts. seekr::Error is thrown at I/O and user-input boundaries (files, flags, requests)
// with a message that names what is at fault.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>

namespace seekr {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
[[noreturn]] inline void check_failed(const char* file, int line, const char* expr,
                                      const std::string& msg) {
  std::fprintf(stderr, "%s:%d: check failed: %s %s\n", file, line, expr, msg.c_str());
  std::fflush(stderr);
  std::abort();
}

// Builds a message from any streamable arguments: str_cat("layer ", 3, ": bad").
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

using detail::str_cat;

}  // namespace seekr

#define SEEKR_CHECK(cond, ...)                                                             \
  do {                                                                                     \
    if (!(cond)) [[unlikely]]                                                              \
      ::seekr::detail::check_failed(__FILE__, __LINE__, #cond,                             \
                                    ::seekr::detail::str_cat("" __VA_OPT__(, ) __VA_ARGS__)); \
  } while (0)

// Throws seekr::Error with a message built from the arguments when cond is false.
#define SEEKR_REQUIRE(cond, ...)                                      \
  do {                                                                \
    if (!(cond)) [[unlikely]]                                         \
      throw ::seekr::Error(::seekr::detail::str_cat(__VA_ARGS__));    \
  } while (0)
