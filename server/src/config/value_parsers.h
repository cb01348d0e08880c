#pragma once
// Parsing and printing of the value types used in kvaultd's config and tenants files: byte sizes,
// durations, booleans, integers, ratios, and bind hosts. The same parser serves a YAML scalar and
// a flag value, so a value means the same thing wherever it is written. Errors are InvalidArgument
// describing the expected form; the caller prefixes the option name. Pure functions.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "kvault/common/result.h"

namespace kvault::server {

// "1000000", "64KiB", "512MiB", "2GiB", "1TiB" (binary), "500KB", "10MB", "1GB", "1TB" (decimal),
// "0"; an optional "B" alone means bytes ("4096B"). Whole numbers only; no spaces inside.
// InvalidArgument for anything else or a value beyond 2^64-1.
Result<uint64_t> ParseSize(std::string_view text);
// The shortest exact form: "1GiB", "1536MiB", "1000000" (never loses bytes).
std::string FormatSize(uint64_t bytes);

// "250ms", "30s", "10m", "2h", "0"; whole numbers with exactly one unit (ms, s, m, h).
Result<std::chrono::milliseconds> ParseDuration(std::string_view text);
// The largest unit that is exact: "10m", "1500ms", "0s".
std::string FormatDuration(std::chrono::milliseconds d);

// "true" or "false" (YAML's other spellings, like "yes" or "on", are refused as ambiguous).
Result<bool> ParseBool(std::string_view text);

// A decimal unsigned integer in [min, max].
Result<uint64_t> ParseBoundedUint(std::string_view text, uint64_t min, uint64_t max);

// A decimal fraction in (0, 1], e.g. "0.9" or "1".
Result<double> ParseRatio(std::string_view text);
std::string FormatRatio(double value);

// True for an IPv4 or IPv6 literal, or "localhost".
bool IsBindHost(std::string_view host);
// True for 127.0.0.0/8, ::1 and "localhost" (what only local processes can reach).
bool IsLoopbackHost(std::string_view host);

}  // namespace kvault::server
