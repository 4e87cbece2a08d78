// Receipt decoding takes anything a client sends. It must never crash, and whatever it accepts
// must be exactly what Sign produces for the fields it found (no second encoding is accepted).
#include <cstdint>
#include <string>

#include "engine/receipt.h"

namespace {
const spool::engine::ReceiptSigner& Signer() {
  static const spool::engine::ReceiptSigner signer(std::string(32, 'k'));
  return signer;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto fields = Signer().Verify(input);
  if (fields && Signer().Sign(*fields) != input) __builtin_trap();
  return 0;
}
