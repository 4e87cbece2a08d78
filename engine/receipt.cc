#include "engine/receipt.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "absl/strings/escaping.h"
#include "engine/check.h"
#include "engine/coding.h"

namespace spool::engine {
namespace {

constexpr uint8_t kVersion = 1;
constexpr size_t kFieldBytes = 1 + 8 + 8 + 4;
constexpr size_t kMacBytes = 16;
constexpr size_t kRawBytes = kFieldBytes + kMacBytes;
constexpr size_t kEncodedBytes = (kRawBytes * 8 + 5) / 6;  // base64 without padding

void Mac(const std::string& secret, std::string_view data, unsigned char out[32]) {
  unsigned int len = 0;
  unsigned char* ok =
      HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  SPOOL_CHECK(ok != nullptr && len == 32, "HMAC-SHA256 failed");
}

}  // namespace

ReceiptSigner::ReceiptSigner(std::string secret) : secret_(std::move(secret)) {
  SPOOL_CHECK(secret_.size() == kSecretBytes, "receipt secret has the wrong size");
}

std::string ReceiptSigner::Sign(const ReceiptFields& fields) const {
  std::string raw;
  raw.reserve(kRawBytes);
  raw.push_back(static_cast<char>(kVersion));
  AppendBigEndian64(&raw, fields.queue_id);
  AppendBigEndian64(&raw, fields.seq);
  for (int shift = 24; shift >= 0; shift -= 8) {
    raw.push_back(static_cast<char>((fields.lease_gen >> shift) & 0xff));
  }
  unsigned char mac[32];
  Mac(secret_, raw, mac);
  raw.append(reinterpret_cast<const char*>(mac), kMacBytes);
  return absl::WebSafeBase64Escape(raw);
}

std::optional<ReceiptFields> ReceiptSigner::Verify(std::string_view receipt) const {
  if (receipt.size() != kEncodedBytes) return std::nullopt;
  std::string raw;
  if (!absl::WebSafeBase64Unescape(absl::string_view(receipt.data(), receipt.size()), &raw) ||
      raw.size() != kRawBytes)
    return std::nullopt;
  // Several encodings decode to the same bytes (the last character's spare bits); accept only
  // the one Sign produces, so that no altered receipt is accepted.
  if (absl::WebSafeBase64Escape(raw) != receipt) return std::nullopt;
  if (static_cast<uint8_t>(raw[0]) != kVersion) return std::nullopt;
  unsigned char mac[32];
  Mac(secret_, std::string_view(raw).substr(0, kFieldBytes), mac);
  if (CRYPTO_memcmp(mac, raw.data() + kFieldBytes, kMacBytes) != 0) return std::nullopt;
  ReceiptFields fields;
  fields.queue_id = DecodeBigEndian64(std::string_view(raw).substr(1));
  fields.seq = DecodeBigEndian64(std::string_view(raw).substr(9));
  for (int i = 17; i < 21; ++i) {
    fields.lease_gen = (fields.lease_gen << 8) | static_cast<uint8_t>(raw[i]);
  }
  return fields;
}

std::string NewReceiptSecret() {
  std::string secret(ReceiptSigner::kSecretBytes, '\0');
  SPOOL_CHECK(RAND_bytes(reinterpret_cast<unsigned char*>(secret.data()),
                         static_cast<int>(secret.size())) == 1,
              "RAND_bytes failed");
  return secret;
}

}  // namespace spool::engine
