#include "engine/receipt.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <random>

#include "absl/strings/escaping.h"

namespace spool::engine {
namespace {

TEST(ReceiptTest, RoundTrips) {
  ReceiptSigner signer(NewReceiptSecret());
  ReceiptFields f{7, (1ull << 40) + 3, 12};
  std::string r = signer.Sign(f);
  EXPECT_EQ(r.size(), 50u);
  EXPECT_EQ(signer.Verify(r), f);
}

// The precomputed-pad HMAC must be HMAC-SHA256 exactly: check against OpenSSL's own HMAC().
TEST(ReceiptTest, MacIsStandardHmacSha256) {
  std::string secret = NewReceiptSecret();
  ReceiptSigner signer(secret);
  ReceiptFields f{0x0102030405060708, 0x1112131415161718, 0x21222324};
  std::string raw;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(signer.Sign(f), &raw));
  ASSERT_EQ(raw.size(), 37u);
  unsigned char mac[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(raw.data()), 21, mac, &len);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(mac), 16), raw.substr(21));
}

TEST(ReceiptTest, AnotherSecretRejects) {
  ReceiptSigner a(NewReceiptSecret()), b(NewReceiptSecret());
  EXPECT_FALSE(b.Verify(a.Sign({1, 2, 3})).has_value());
}

TEST(ReceiptTest, EveryBitFlipIsRejected) {
  ReceiptSigner signer(NewReceiptSecret());
  std::string r = signer.Sign({1, 99, 4});
  for (size_t i = 0; i < r.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = r;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      EXPECT_FALSE(signer.Verify(bad).has_value()) << "byte " << i << " bit " << bit;
    }
  }
}

TEST(ReceiptTest, MalformedAndRandomReceiptsAreRejected) {
  ReceiptSigner signer(NewReceiptSecret());
  std::string good = signer.Sign({1, 2, 3});
  for (std::string bad : {std::string(), std::string("x"), good.substr(1), good + "A", good + "=",
                          std::string(50, '\0'), std::string(50, 'A')}) {
    EXPECT_FALSE(signer.Verify(bad).has_value()) << bad;
  }
  std::mt19937_64 rng(1);
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  for (int i = 0; i < 20000; ++i) {
    std::string r(50, 'A');
    for (char& c : r) c = kAlphabet[rng() % 64];
    EXPECT_FALSE(signer.Verify(r).has_value());
  }
}

}  // namespace
}  // namespace spool::engine
