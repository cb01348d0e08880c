#pragma once
// The option table of kvaultd: one descriptor per DaemonConfig field. It is the single list that
// drives YAML loading, flag overrides, --help, --print-config and per-value validation, so adding
// an option is one field in daemon_config.h plus one row in options.cc. Defaults are not in the
// table: they are read from a default-constructed DaemonConfig. The table is immutable after its
// first use; thread-safe to read.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "config/daemon_config.h"
#include "kvault/common/status.h"

namespace kvault::server {

enum class OptionType {
  kString,    // free text
  kPath,      // a file or directory path; empty allowed where the help says so
  kHost,      // an IP literal or "localhost"
  kPort,      // 0..65535; 0 = any free port
  kCount,     // a decimal integer within [min, max]
  kSize,      // a byte size with an optional unit (ParseSize), within [min, max]
  kDuration,  // a duration with a unit (ParseDuration), within [min, max] milliseconds
  kRatio,     // a fraction in (0, 1]
  kBool,      // true or false
  kChoice,    // one of `choices`
};

// How the table reaches a field of DaemonConfig without knowing its nesting.
template <typename T>
using FieldAccess = T& (*)(DaemonConfig&);
using OptionField = std::variant<FieldAccess<std::string>, FieldAccess<uint16_t>,
                                 FieldAccess<uint32_t>, FieldAccess<uint64_t>, FieldAccess<bool>,
                                 FieldAccess<double>, FieldAccess<std::chrono::milliseconds>>;

struct OptionDescriptor {
  // The YAML key, dotted for nested maps: "control.port". The flag is --control-port (FlagName);
  // --control.port is accepted as well.
  std::string_view key;
  OptionType type;
  OptionField field;
  // What it does, for --help and docs; sentences, no trailing default (added by the help text).
  std::string_view help;
  // Bounds of kCount, kSize and kDuration (milliseconds), inclusive.
  uint64_t min = 0;
  uint64_t max = UINT64_MAX;
  // Accepted values of kChoice.
  std::vector<std::string> choices;
};

// Every option, in --help order (grouped by the key's first component).
const std::vector<OptionDescriptor>& DaemonOptions();

// The option whose YAML key or flag name (without "--") is `name`; nullptr when none is.
const OptionDescriptor* FindOption(std::string_view name);

// "control.port" -> "control-port"; "limits.max_block_bytes" -> "limits-max-block-bytes".
std::string FlagName(const OptionDescriptor& option);

// Placeholder of the value in --help: "PORT", "SIZE", "prefix|lru", ...
std::string ValuePlaceholder(const OptionDescriptor& option);

// Parses `text` as the option's type, checks its bounds, and stores it in `config`.
// InvalidArgument describing the expected value; the message does not name the option (the caller
// knows whether it came from a flag or a file line).
Status SetOption(const OptionDescriptor& option, std::string_view text, DaemonConfig& config);

// The option's value in `config`, in the form SetOption accepts ("1GiB", "30s", "true").
std::string OptionValueText(const OptionDescriptor& option, const DaemonConfig& config);

}  // namespace kvault::server
