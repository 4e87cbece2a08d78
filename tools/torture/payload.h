// Torture payloads: "<uid>|<crc32 of uid and filler, 8 hex digits>|<filler>", so a consumer
// can tell which message it got and whether the bytes are the ones sent.
#ifndef SPOOL_TOOLS_TORTURE_PAYLOAD_H_
#define SPOOL_TOOLS_TORTURE_PAYLOAD_H_

#include <array>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

namespace spool::torture {

// CRC-32 (IEEE 802.3, reflected, as zlib computes it).
inline uint32_t Crc32(std::string_view data, uint32_t crc = 0) {
  static const std::array<uint32_t, 256> kTable = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (unsigned char ch : data) crc = kTable[(crc ^ ch) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

inline std::string MakePayload(const std::string& uid, size_t filler_bytes, uint64_t seed) {
  std::string filler(filler_bytes, ' ');
  for (size_t i = 0; i < filler_bytes; ++i) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    filler[i] = static_cast<char>('a' + (seed >> 59) % 26);
  }
  char crc[9];
  std::snprintf(crc, sizeof crc, "%08x", Crc32(filler, Crc32(uid)));
  return uid + "|" + crc + "|" + filler;
}

// The uid, or nullopt when the payload is not one of ours or its bytes changed.
inline std::optional<std::string> ParsePayload(std::string_view payload) {
  size_t a = payload.find('|');
  if (a == std::string_view::npos || a == 0 || payload.size() < a + 10 || payload[a + 9] != '|') {
    return std::nullopt;
  }
  std::string_view uid = payload.substr(0, a), filler = payload.substr(a + 10);
  char crc[9];
  std::snprintf(crc, sizeof crc, "%08x", Crc32(filler, Crc32(uid)));
  if (payload.substr(a + 1, 8) != std::string_view(crc, 8)) return std::nullopt;
  return std::string(uid);
}

}  // namespace spool::torture

#endif  // SPOOL_TOOLS_TORTURE_PAYLOAD_H_
