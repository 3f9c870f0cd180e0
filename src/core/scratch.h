// Scratch buffers that only grow, so steady-state loops (a training step, a decode step) do not
// allocate once they have seen their shapes (tests/test_no_alloc.cpp).
#pragma once

#include <cstddef>
#include <vector>

namespace seekr {

// v's data with room for at least n elements; v never shrinks. Declare the vector
// `thread_local` at the call site for per-thread scratch inside parallel regions (each call
// site then owns its buffer, so nested calls cannot clobber it).
template <typename T>
T* grown(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

}  // namespace seekr
