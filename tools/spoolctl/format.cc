#include "tools/spoolctl/format.h"

#include <charconv>
#include <cstdio>
#include <ctime>

namespace spool::ctl {
namespace {

constexpr int64_t kSecond = 1000, kMinute = 60 * kSecond, kHour = 60 * kMinute, kDay = 24 * kHour;

std::optional<uint64_t> Number(std::string_view digits) {
  uint64_t v = 0;
  if (digits.empty()) return std::nullopt;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return v;
}

// Splits "30s" into ("30", "s").
std::pair<std::string_view, std::string_view> SplitUnit(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  return {text.substr(0, i), text.substr(i)};
}

// Counts and rates: right-aligned. Zero-padded strings (message ids) are names, not numbers.
bool IsNumeric(const std::string& cell) {
  if (cell.empty() || cell == "-") return false;
  if (cell.size() > 1 && cell[0] == '0' && cell[1] != '.') return false;
  for (char c : cell) {
    if (!((c >= '0' && c <= '9') || c == '.' || c == ',')) return false;
  }
  return true;
}

// Bytes of the UTF-8 sequence starting at s[i], or 0 when it is not valid UTF-8.
size_t Utf8Length(std::string_view s, size_t i) {
  unsigned char c = s[i];
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return 0;
  }
  return n;
}

}  // namespace

std::optional<int64_t> ParseDuration(std::string_view text) {
  auto [digits, unit] = SplitUnit(text);
  auto n = Number(digits);
  if (!n || *n > 1'000'000'000) return std::nullopt;
  int64_t v = static_cast<int64_t>(*n);
  if (unit == "ms") return v;
  if (unit == "s") return v * kSecond;
  if (unit == "m") return v * kMinute;
  if (unit == "h") return v * kHour;
  if (unit == "d") return v * kDay;
  if (unit.empty() && v == 0) return 0;
  return std::nullopt;
}

std::optional<uint64_t> ParseSize(std::string_view text) {
  auto [digits, unit] = SplitUnit(text);
  auto n = Number(digits);
  if (!n || *n > (uint64_t{1} << 40)) return std::nullopt;
  if (unit.empty() || unit == "B") return *n;
  if (unit == "KiB") return *n << 10;
  if (unit == "MiB") return *n << 20;
  if (unit == "GiB") return *n << 30;
  if (unit == "KB") return *n * 1000;
  if (unit == "MB") return *n * 1000'000;
  if (unit == "GB") return *n * 1000'000'000;
  return std::nullopt;
}

std::string ExactDuration(int64_t ms) {
  if (ms == 0) return "0s";
  for (auto [unit, suffix] : {std::pair{kDay, "d"}, std::pair{kHour, "h"}, std::pair{kMinute, "m"},
                              std::pair{kSecond, "s"}}) {
    if (ms % unit == 0) return std::to_string(ms / unit) + suffix;
  }
  return std::to_string(ms) + "ms";
}

std::string Age(int64_t ms) {
  if (ms < 0) ms = 0;
  struct Unit {
    int64_t ms;
    const char* suffix;
  };
  static constexpr Unit kUnits[] = {{kDay, "d"}, {kHour, "h"}, {kMinute, "m"}, {kSecond, "s"}};
  for (size_t i = 0; i < 4; ++i) {
    if (ms >= kUnits[i].ms || i == 3) {
      std::string out = std::to_string(ms / kUnits[i].ms) + kUnits[i].suffix;
      if (i < 3 && ms % kUnits[i].ms >= kUnits[i + 1].ms) {
        out += std::to_string(ms % kUnits[i].ms / kUnits[i + 1].ms) + kUnits[i + 1].suffix;
      }
      return out;
    }
  }
  return "0s";
}

std::string Bytes(uint64_t n) {
  if (n < 1024) return std::to_string(n) + " B";
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = -1;
  while (v >= 1024 && u < 3) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (v == static_cast<double>(static_cast<uint64_t>(v))) {
    std::snprintf(buf, sizeof buf, "%llu %s", static_cast<unsigned long long>(v), kUnits[u]);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  }
  return buf;
}

std::string Time(int64_t ms) {
  time_t seconds = static_cast<time_t>(ms / 1000);
  std::tm tm;
  gmtime_r(&seconds, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

std::string Preview(std::string_view payload, size_t max_chars) {
  bool text = true;
  for (size_t i = 0; i < payload.size() && text;) {
    size_t n = Utf8Length(payload, i);
    if (n == 0 || (n == 1 && static_cast<unsigned char>(payload[i]) < 0x20 && payload[i] != '\t') ||
        payload[i] == 0x7f) {
      text = false;
    }
    i += n == 0 ? 1 : n;
  }
  std::string out;
  size_t chars = 0;
  if (text) {
    for (size_t i = 0; i < payload.size() && chars < max_chars; ++chars) {
      size_t n = Utf8Length(payload, i);
      out.append(payload.substr(i, n));
      i += n;
    }
    if (out.size() == payload.size()) return out;
  } else {
    static constexpr char kHex[] = "0123456789abcdef";
    out = "hex:";
    for (size_t i = 0; i < payload.size() && out.size() + 2 <= max_chars; ++i) {
      out.push_back(kHex[static_cast<unsigned char>(payload[i]) >> 4]);
      out.push_back(kHex[static_cast<unsigned char>(payload[i]) & 0xf]);
    }
    if ((out.size() - 4) / 2 == payload.size()) return out;
  }
  return out + "…(" + std::to_string(payload.size()) + " bytes)";
}

std::string Plural(uint64_t n, const std::string& noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

std::string Table(const std::vector<std::vector<std::string>>& rows) {
  if (rows.empty()) return "";
  size_t columns = 0;
  for (const auto& r : rows) columns = std::max(columns, r.size());
  std::vector<size_t> width(columns, 0);
  std::vector<bool> numeric(columns, true), has_number(columns, false);
  auto display_width = [](const std::string& s) {
    size_t w = 0;
    for (unsigned char c : s) w += (c & 0xc0) != 0x80;  // count code points
    return w;
  };
  for (size_t r = 0; r < rows.size(); ++r) {
    for (size_t c = 0; c < rows[r].size(); ++c) {
      width[c] = std::max(width[c], display_width(rows[r][c]));
      if (r > 0 && !rows[r][c].empty() && rows[r][c] != "-") {
        if (IsNumeric(rows[r][c])) {
          has_number[c] = true;
        } else {
          numeric[c] = false;
        }
      }
    }
  }
  for (size_t c = 0; c < columns; ++c) numeric[c] = numeric[c] && has_number[c];
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      const std::string& cell = row[c];
      size_t pad = width[c] - display_width(cell);
      if (numeric[c]) line.append(pad, ' ');
      line += cell;
      if (!numeric[c] && c + 1 < row.size()) line.append(pad, ' ');
      if (c + 1 < row.size()) line += "  ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

}  // namespace spool::ctl
