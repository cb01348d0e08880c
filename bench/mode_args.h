#pragma once
// The opening every `kvault-bench <mode>` shares: --help, then the mode's flags parsed into its
// Config, failures printed as "kvault-bench <mode>: <message>". Used from the main thread.

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kvault/common/cli_args.h"
#include "kvault/common/result.h"
#include "kvault/common/status.h"

namespace kvault::bench {

// Prints "kvault-bench <mode>: <message>" on stderr; returns `exit_code`.
inline int FailMode(const char* mode, int exit_code, const Status& status) {
  std::fprintf(stderr, "kvault-bench %s: %s\n", mode, status.message().c_str());
  return exit_code;
}

// The start of a Run*Bench: when `args` ask for --help / -h, prints `usage` on stdout and returns
// 0; else parses them with `parse` (Result<Config>(const std::vector<std::string>&)) into
// `config` and returns nullopt, or prints the parse error and returns 2.
template <typename Config, typename Parse>
std::optional<int> StartMode(const char* mode, const char* usage,
                             const std::vector<std::string>& args, Parse&& parse,
                             std::optional<Config>& config) {
  if (WantsHelp(args)) {
    std::fputs(usage, stdout);
    return 0;
  }
  Result<Config> parsed = parse(args);
  if (!parsed.ok()) return FailMode(mode, 2, parsed.status());
  config.emplace(std::move(*parsed));
  return std::nullopt;
}

// The items of a comma-separated flag value ("64K,1M" -> {"64K", "1M"}); empty items are kept
// so that the caller's parser refuses them with its own message.
inline std::vector<std::string> SplitCommaList(const std::string& text) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find(',', start), text.size());
    parts.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

}  // namespace kvault::bench
