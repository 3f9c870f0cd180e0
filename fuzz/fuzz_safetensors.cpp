// libFuzzer target for the safetensors header parser and validator. Any input must either
// parse into views that lie inside the buffer or throw seekr::Error; crashes, sanitizer
// reports and other exception types are bugs.
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "core/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> bytes(data, data + size);
  try {
    const seekr::SafetensorsFile f = seekr::SafetensorsFile::from_bytes(std::move(bytes));
    for (const seekr::TensorView& t : f.tensors()) {
      // Touch the first and last byte so ASan checks the views stay inside the buffer.
      volatile uint8_t sink = 0;
      if (t.nbytes > 0) sink = t.data[0] ^ t.data[t.nbytes - 1];
      (void)sink;
      SEEKR_CHECK(f.find(t.name) != nullptr);
      SEEKR_CHECK(t.numel() >= 0);
      if (seekr::dtype_is_float(t.dtype) && t.nbytes <= 4096) {
        std::vector<float> out(static_cast<size_t>(t.numel()));
        seekr::copy_to_f32(t, out.data());
      }
    }
  } catch (const seekr::Error&) {
  }
  return 0;
}
