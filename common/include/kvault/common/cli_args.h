#pragma once
// A small command-line parser for kvault's binaries: `--name value`, `--name=value`, boolean
// `--flag`, and positional arguments (everything after a lone `--` is positional). Unknown flags
// and missing values are errors, so a typo never silently runs the default. Not thread-safe (a
// value type used on one thread).

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "kvault/common/result.h"

namespace kvault {

class CliArgs {
 public:
  // `value_flags` take a value; `bool_flags` do not. Names without the leading "--".
  // InvalidArgument for an unknown flag, a value flag without a value, or a repeated flag.
  static Result<CliArgs> Parse(const std::vector<std::string>& args,
                               const std::set<std::string>& value_flags,
                               const std::set<std::string>& bool_flags);

  bool Has(std::string_view name) const { return values_.count(std::string(name)) != 0; }
  std::optional<std::string> Get(std::string_view name) const;
  std::string GetOr(std::string_view name, std::string_view fallback) const;
  // Parses an unsigned integer flag within [min, max]; absent -> fallback.
  Result<uint64_t> GetUint(std::string_view name, uint64_t fallback, uint64_t min,
                           uint64_t max) const;
  const std::vector<std::string>& positional() const { return positional_; }
  // For commands that take flags only: InvalidArgument "unexpected argument '<first>'" when
  // there is a positional argument, else OK.
  Status RejectPositional() const;

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

// Parses a whole decimal unsigned integer in [min, max]; InvalidArgument naming `what` otherwise.
Result<uint64_t> ParseUintArg(std::string_view what, std::string_view text, uint64_t min,
                              uint64_t max);

// True when any argument is --help or -h (a subcommand then prints its usage and exits 0).
bool WantsHelp(const std::vector<std::string>& args);

// Whether `text` is a UCX transport list in UCX_TLS syntax as kvault accepts it: comma-separated,
// non-empty names of [a-z0-9_] ("posix,cma", "tcp", "all"), the whole list optionally negated by
// one leading '^' ("^tcp,cma": every transport but these; UCX reads '^' only there). No ":aux"
// suffixes. The empty list (UCX's default) passes only with `allow_empty`.
bool IsUcxTransportList(std::string_view text, bool allow_empty);

}  // namespace kvault
