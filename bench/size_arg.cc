#include "size_arg.h"

#include <utility>

#include "kvault/common/cli_args.h"

namespace kvault::bench {

Result<uint64_t> ParseSizeArg(std::string_view what, const std::string& text, uint64_t min,
                              uint64_t max) {
  std::string digits = text;
  uint64_t scale = 1;
  for (const auto& [suffix, shift] : {std::pair<const char*, int>{"KiB", 10},
                                      {"MiB", 20},
                                      {"GiB", 30},
                                      {"K", 10},
                                      {"M", 20},
                                      {"G", 30}}) {
    const std::string s(suffix);
    if (digits.size() > s.size() && digits.compare(digits.size() - s.size(), s.size(), s) == 0) {
      scale = uint64_t{1} << shift;
      digits.resize(digits.size() - s.size());
      break;
    }
  }
  Result<uint64_t> n = ParseUintArg(what, digits, 0, max / scale);
  if (!n.ok() || *n * scale < min) {
    return Status::InvalidArgument(std::string(what) + " takes byte sizes from " +
                                   std::to_string(min) + " to " + std::to_string(max) +
                                   " (suffixes KiB, MiB, GiB), got '" + text + "'");
  }
  return *n * scale;
}

}  // namespace kvault::bench
