#include "engine/coding.h"

#include <cstring>

namespace spool::engine {

void AppendBigEndian64(std::string* out, uint64_t value) {
  char buf[8];
  for (int i = 7; i >= 0; --i) {
    buf[i] = static_cast<char>(value & 0xff);
    value >>= 8;
  }
  out->append(buf, 8);
}

uint64_t DecodeBigEndian64(std::string_view in) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value = (value << 8) | static_cast<uint8_t>(in[i]);
  return value;
}

std::string QueueRecordKey(uint64_t queue_id) {
  std::string key(1, kQueuePrefix);
  AppendBigEndian64(&key, queue_id);
  return key;
}

std::string CounterPrefix(uint64_t queue_id) {
  std::string key(1, kCounterPrefix);
  AppendBigEndian64(&key, queue_id);
  return key;
}

std::string CounterKey(uint64_t queue_id, Counter counter) {
  std::string key = CounterPrefix(queue_id);
  key.push_back(static_cast<char>(counter));
  return key;
}

std::string EncodeInt64(int64_t value) {
  std::string out(8, '\0');
  uint64_t v = static_cast<uint64_t>(value);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return out;
}

std::optional<int64_t> DecodeInt64(std::string_view in) {
  if (in.size() != 8) return std::nullopt;
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return static_cast<int64_t>(v);
}

std::string MessageKey(uint64_t queue_id, uint64_t seq) {
  std::string key;
  key.reserve(16);
  AppendBigEndian64(&key, queue_id);
  AppendBigEndian64(&key, seq);
  return key;
}

std::optional<MessageKeyParts> ParseMessageKey(std::string_view key) {
  if (key.size() != 16) return std::nullopt;
  return MessageKeyParts{DecodeBigEndian64(key), DecodeBigEndian64(key.substr(8))};
}

std::string QueueStart(uint64_t queue_id) {
  std::string key;
  AppendBigEndian64(&key, queue_id);
  return key;
}

std::string DedupKey(uint64_t queue_id, std::string_view dedup_id) {
  std::string key = QueueStart(queue_id);
  key.append(dedup_id);
  return key;
}

std::string FormatMessageId(uint64_t seq) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(16, '0');
  for (int i = 15; i >= 0; --i) {
    id[i] = kHex[seq & 0xf];
    seq >>= 4;
  }
  return id;
}

std::optional<uint64_t> ParseMessageId(std::string_view id) {
  if (id.size() != 16) return std::nullopt;
  uint64_t seq = 0;
  for (char c : id) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return std::nullopt;
    }
    seq = (seq << 4) | static_cast<uint64_t>(digit);
  }
  return seq;
}

}  // namespace spool::engine
