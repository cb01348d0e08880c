#pragma once
// Output helpers of kvault-bench: an aligned text table for people and a JSON document for tools.
// Not thread-safe (used from the benchmark's main thread).

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "kvault/common/status.h"

namespace kvault::bench {

// A JSON value restricted to what benchmarks emit.
struct Json {
  using Object = std::vector<std::pair<std::string, Json>>;
  using Array = std::vector<Json>;
  std::variant<std::nullptr_t, bool, double, int64_t, std::string, Object, Array> value;

  Json() : value(nullptr) {}
  Json(bool b) : value(b) {}                            // NOLINT(google-explicit-constructor)
  Json(double d) : value(d) {}                          // NOLINT(google-explicit-constructor)
  Json(int64_t i) : value(i) {}                         // NOLINT(google-explicit-constructor)
  Json(uint64_t i) : value(static_cast<int64_t>(i)) {}  // NOLINT(google-explicit-constructor)
  Json(int i) : value(static_cast<int64_t>(i)) {}       // NOLINT(google-explicit-constructor)
  Json(unsigned i) : value(static_cast<int64_t>(i)) {}  // NOLINT(google-explicit-constructor)
  Json(std::string s) : value(std::move(s)) {}          // NOLINT(google-explicit-constructor)
  Json(const char* s) : value(std::string(s)) {}        // NOLINT(google-explicit-constructor)
  Json(Object o) : value(std::move(o)) {}               // NOLINT(google-explicit-constructor)
  Json(Array a) : value(std::move(a)) {}                // NOLINT(google-explicit-constructor)

  // Serialized with two-space indentation; non-finite numbers become null.
  std::string Dump(int indent = 0) const;
};

// Writes `json` to `path` (atomically).
Status WriteJsonFile(const std::string& path, const Json& json);

// A text table: header row, then rows; columns right-aligned except the first.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string Render() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// printf-style formatting into a std::string.
std::string Format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// Median of a non-empty sample.
double Median(std::vector<double> samples);

// Nearest-rank percentile (0 < p <= 100) of a non-empty sample; sorts it.
double Percentile(std::vector<double>& samples, double p);

}  // namespace kvault::bench
