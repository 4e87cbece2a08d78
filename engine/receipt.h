// Receipts: what a consumer gets with each leased message and hands back to Ack, Nack and
// ExtendLease. A receipt names the queue (by its internal id, never reused, so a receipt does
// not outlive a deleted-and-recreated queue), the message, and the lease generation, and is
// signed with the data directory's secret so it cannot be forged or altered.
//
// Layout, then base64url without padding (50 characters):
//   version (1 byte, = 1) | queue_id (8, big-endian) | seq (8) | lease_gen (4)
//   | HMAC-SHA256(secret, the 21 bytes before)[0..16)
#ifndef SPOOL_ENGINE_RECEIPT_H_
#define SPOOL_ENGINE_RECEIPT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace spool::engine {

struct ReceiptFields {
  uint64_t queue_id = 0;
  uint64_t seq = 0;
  uint32_t lease_gen = 0;
  bool operator==(const ReceiptFields&) const = default;
};

class ReceiptSigner {
 public:
  static constexpr size_t kSecretBytes = 32;
  // REQUIRES: secret.size() == kSecretBytes.
  explicit ReceiptSigner(std::string secret);

  std::string Sign(const ReceiptFields& fields) const;
  // The fields, or nullopt for anything that is not a receipt this signer made: wrong length,
  // not canonical base64url, unknown version, bad signature. Constant-time signature compare.
  std::optional<ReceiptFields> Verify(std::string_view receipt) const;

 private:
  // HMAC-SHA256(secret, data) into out, from the keyed states computed once.
  void Mac(std::string_view data, unsigned char out[32]) const;

  // SHA-256 states after absorbing (secret ^ ipad) and (secret ^ opad): HMAC's two keyed
  // prefixes, so each receipt costs two short hashes and no key setup (OpenSSL 3's one-shot
  // HMAC() re-keys and looks the digest up on every call, a tenth of spoold's CPU).
  struct Sha256State;
  std::shared_ptr<const Sha256State> inner_, outer_;
};

// kSecretBytes of cryptographically random bytes.
std::string NewReceiptSecret();

}  // namespace spool::engine

#endif  // SPOOL_ENGINE_RECEIPT_H_
