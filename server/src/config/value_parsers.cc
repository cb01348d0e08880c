#include "config/value_parsers.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <array>
#include <charconv>
#include <cmath>
#include <cstdlib>

namespace kvault::server {
namespace {

struct Unit {
  std::string_view suffix;
  uint64_t factor;
};

// Binary units first: FormatSize prefers them.
constexpr std::array<Unit, 9> kSizeUnits = {{
    {"TiB", uint64_t{1} << 40},
    {"GiB", uint64_t{1} << 30},
    {"MiB", uint64_t{1} << 20},
    {"KiB", uint64_t{1} << 10},
    {"TB", 1000ull * 1000 * 1000 * 1000},
    {"GB", 1000ull * 1000 * 1000},
    {"MB", 1000ull * 1000},
    {"KB", 1000},
    {"B", 1},
}};

// Splits "123abc" into its leading decimal digits and the rest; false when there are no digits or
// the number overflows u64.
bool SplitNumber(std::string_view text, uint64_t* value, std::string_view* rest) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), *value);
  if (ec != std::errc() || ptr == text.data()) return false;
  *rest = text.substr(static_cast<size_t>(ptr - text.data()));
  return true;
}

constexpr int64_t kMinuteMs = 60'000;
constexpr int64_t kHourMs = 3'600'000;

std::string Quoted(std::string_view text) { return "'" + std::string(text) + "'"; }

}  // namespace

Result<uint64_t> ParseSize(std::string_view text) {
  const std::string expected =
      "expected a byte size such as 1000000, 512MiB, 2GiB or 10GB, got " + Quoted(text);
  uint64_t number = 0;
  std::string_view suffix;
  if (!SplitNumber(text, &number, &suffix)) return Status::InvalidArgument(expected);
  if (suffix.empty()) return number;
  if (suffix == "kB") suffix = "KB";  // the SI spelling
  for (const Unit& unit : kSizeUnits) {
    if (suffix != unit.suffix) continue;
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(number, unit.factor, &bytes)) {
      return Status::InvalidArgument("byte size " + Quoted(text) + " does not fit in 64 bits");
    }
    return bytes;
  }
  return Status::InvalidArgument(expected);
}

std::string FormatSize(uint64_t bytes) {
  if (bytes == 0) return "0";
  constexpr size_t kBinaryUnits = 4;  // TiB..KiB; otherwise plain bytes, which is always exact
  for (size_t i = 0; i < kBinaryUnits; ++i) {
    const Unit& unit = kSizeUnits[i];
    if (bytes % unit.factor == 0) {
      return std::to_string(bytes / unit.factor) + std::string(unit.suffix);
    }
  }
  return std::to_string(bytes);
}

Result<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  const std::string expected =
      "expected a duration such as 250ms, 30s, 10m or 2h, got " + Quoted(text);
  uint64_t number = 0;
  std::string_view unit;
  if (!SplitNumber(text, &number, &unit)) return Status::InvalidArgument(expected);
  uint64_t factor_ms = 0;
  if (unit == "ms") {
    factor_ms = 1;
  } else if (unit == "s") {
    factor_ms = 1000;
  } else if (unit == "m") {
    factor_ms = kMinuteMs;
  } else if (unit == "h") {
    factor_ms = kHourMs;
  } else if (unit.empty() && number == 0) {
    return std::chrono::milliseconds(0);
  } else {
    return Status::InvalidArgument(expected);
  }
  uint64_t ms = 0;
  // Keep it within what std::chrono::milliseconds (signed 64-bit) can hold with room to add.
  if (__builtin_mul_overflow(number, factor_ms, &ms) || ms > (uint64_t{1} << 53)) {
    return Status::InvalidArgument("duration " + Quoted(text) + " is too long");
  }
  return std::chrono::milliseconds(static_cast<int64_t>(ms));
}

std::string FormatDuration(std::chrono::milliseconds d) {
  const int64_t ms = d.count();
  if (ms == 0) return "0s";
  if (ms % kHourMs == 0) return std::to_string(ms / kHourMs) + "h";
  if (ms % kMinuteMs == 0) return std::to_string(ms / kMinuteMs) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

Result<bool> ParseBool(std::string_view text) {
  if (text == "true") return true;
  if (text == "false") return false;
  return Status::InvalidArgument("expected true or false, got " + Quoted(text));
}

Result<uint64_t> ParseBoundedUint(std::string_view text, uint64_t min, uint64_t max) {
  uint64_t value = 0;
  std::string_view rest;
  if (!SplitNumber(text, &value, &rest) || !rest.empty() || value < min || value > max) {
    return Status::InvalidArgument("expected an integer in " + std::to_string(min) + ".." +
                                   std::to_string(max) + ", got " + Quoted(text));
  }
  return value;
}

Result<double> ParseRatio(std::string_view text) {
  const std::string s(text);
  char* end = nullptr;
  // Only plain decimals: strtod alone would also take " 0.9", "0x1p-1" or "nan".
  const bool plain = !s.empty() && s.find_first_not_of("0123456789.") == std::string::npos;
  const double value = plain ? std::strtod(s.c_str(), &end) : NAN;
  if (!plain || end != s.c_str() + s.size() || !(value > 0.0 && value <= 1.0)) {
    return Status::InvalidArgument("expected a fraction in (0, 1] such as 0.9, got " +
                                   Quoted(text));
  }
  return value;
}

std::string FormatRatio(double value) {
  char buf[400];
  // The shortest plain decimal that parses back to the same double ("0.95", not
  // "0.94999999999999996"; "0.0001", not the "1e-04" of the shortest form, which ParseRatio
  // refuses).
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::fixed);
  return ec == std::errc() ? std::string(buf, end) : std::string("nan");
}

bool IsBindHost(std::string_view host) {
  if (host == "localhost") return true;
  const std::string s(host);
  in_addr v4;
  in6_addr v6;
  return inet_pton(AF_INET, s.c_str(), &v4) == 1 || inet_pton(AF_INET6, s.c_str(), &v6) == 1;
}

bool IsLoopbackHost(std::string_view host) {
  if (host == "localhost") return true;
  const std::string s(host);
  in_addr v4;
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

}  // namespace kvault::server
