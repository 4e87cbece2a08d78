// What spoolctl reads from and writes for people: durations and sizes in human units, tables,
// payload previews, times. Pure functions; format_test.cc covers them.
#ifndef SPOOL_TOOLS_SPOOLCTL_FORMAT_H_
#define SPOOL_TOOLS_SPOOLCTL_FORMAT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace spool::ctl {

// "500ms", "30s", "5m", "12h", "4d" (one number, one unit; "0" alone is zero) -> milliseconds.
std::optional<int64_t> ParseDuration(std::string_view text);
// "262144", "256KiB", "1MiB", "1GiB" (also "KB"/"MB" as 1000s) -> bytes.
std::optional<uint64_t> ParseSize(std::string_view text);

// Milliseconds in the largest unit that divides them exactly: "30s", "5m", "1500ms".
std::string ExactDuration(int64_t ms);
// An age for people, two units at most: "0s", "45s", "3m12s", "2h5m", "4d3h".
std::string Age(int64_t ms);
// Bytes in binary units: "0 B", "512 B", "256 KiB", "1.5 MiB".
std::string Bytes(uint64_t n);
// Milliseconds since the epoch as UTC: "2026-11-24T20:47:21.123Z".
std::string Time(int64_t ms);

// A payload for a terminal: UTF-8 text (no control characters but tab) as is, anything else as
// "hex:..."; cut to max_chars with "…(N bytes)" at the end when longer.
std::string Preview(std::string_view payload, size_t max_chars);

// "1 message", "3 messages".
std::string Plural(uint64_t n, const std::string& noun);

// A plain text table: columns padded to their widest cell, two spaces apart, numeric-looking
// columns right-aligned. The first row is the header.
std::string Table(const std::vector<std::vector<std::string>>& rows);

}  // namespace spool::ctl

#endif  // SPOOL_TOOLS_SPOOLCTL_FORMAT_H_
