#include "engine/receipt.h"

// SHA256_Init/Update/Final are deprecated in OpenSSL 3 in favour of EVP, whose contexts
// cannot be copied as cheaply; the plain state struct is what makes precomputed HMAC pads work.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstring>

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

}  // namespace

struct ReceiptSigner::Sha256State {
  SHA256_CTX ctx;
};

ReceiptSigner::ReceiptSigner(std::string secret) {
  SPOOL_CHECK(secret.size() == kSecretBytes, "receipt secret has the wrong size");
  unsigned char ipad[64], opad[64];
  for (size_t i = 0; i < 64; ++i) {
    unsigned char k = i < secret.size() ? static_cast<unsigned char>(secret[i]) : 0;
    ipad[i] = k ^ 0x36;
    opad[i] = k ^ 0x5c;
  }
  auto inner = std::make_shared<Sha256State>();
  auto outer = std::make_shared<Sha256State>();
  SPOOL_CHECK(SHA256_Init(&inner->ctx) == 1 && SHA256_Update(&inner->ctx, ipad, 64) == 1 &&
                  SHA256_Init(&outer->ctx) == 1 && SHA256_Update(&outer->ctx, opad, 64) == 1,
              "SHA-256 failed");
  OPENSSL_cleanse(ipad, sizeof ipad);
  OPENSSL_cleanse(opad, sizeof opad);
  inner_ = std::move(inner);
  outer_ = std::move(outer);
}

void ReceiptSigner::Mac(std::string_view data, unsigned char out[32]) const {
  SHA256_CTX ctx = inner_->ctx;
  unsigned char inner_digest[32];
  SHA256_Update(&ctx, data.data(), data.size());
  SHA256_Final(inner_digest, &ctx);
  ctx = outer_->ctx;
  SHA256_Update(&ctx, inner_digest, sizeof inner_digest);
  SHA256_Final(out, &ctx);
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
  Mac(raw, mac);
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
  Mac(std::string_view(raw).substr(0, kFieldBytes), mac);
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
