// The little JSON that the HTTP front ends write by hand (error bodies, peeked messages); larger
// documents that mirror the contract are printed from spool.v1 messages by protobuf instead.
#ifndef SPOOL_SERVER_HTTP_JSON_H_
#define SPOOL_SERVER_HTTP_JSON_H_

#include <string>
#include <string_view>

namespace spool::http {

// s as a JSON string literal, quotes included. Control characters are escaped; bytes that are
// not valid UTF-8 become U+FFFD, so the result is always valid JSON.
std::string JsonQuote(std::string_view s);

// True when s is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool IsValidUtf8(std::string_view s);

// The length of the longest prefix of s, at most max bytes, that ends on a character boundary.
size_t Utf8Prefix(std::string_view s, size_t max);

}  // namespace spool::http

#endif  // SPOOL_SERVER_HTTP_JSON_H_
