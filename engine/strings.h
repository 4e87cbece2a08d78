// String concatenation for messages. Debian's Abseil has its own absl::string_view (not
// std::string_view), so absl::StrCat does not take the std::string_view our headers use; Cat
// takes strings, string views, C strings, characters and integers.
#ifndef SPOOL_ENGINE_STRINGS_H_
#define SPOOL_ENGINE_STRINGS_H_

#include <concepts>
#include <string>
#include <string_view>

namespace spool::engine {
namespace internal {
inline void CatAppend(std::string& out, std::string_view s) { out.append(s); }
inline void CatAppend(std::string& out, char c) { out.push_back(c); }
template <std::integral T>
requires(!std::same_as<T, char> && !std::same_as<T, bool>) void CatAppend(std::string& out, T v) {
  out.append(std::to_string(v));
}
}  // namespace internal

template <typename... Args>
std::string Cat(const Args&... args) {
  std::string out;
  (internal::CatAppend(out, args), ...);
  return out;
}

}  // namespace spool::engine

#endif  // SPOOL_ENGINE_STRINGS_H_
