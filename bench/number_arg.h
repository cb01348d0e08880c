#pragma once
// Decimal command-line values of kvault-bench ("0.25", "1e-3"). Thread-safe (pure).

#include <string>
#include <string_view>

#include "kvault/common/result.h"

namespace kvault::bench {

// Parses all of `text` as a number (strtod) and checks it lies in [min, max]; NaN never does.
// InvalidArgument naming `what` (the flag, "--name") and the range otherwise.
Result<double> ParseNumberArg(std::string_view what, const std::string& text, double min,
                              double max);

}  // namespace kvault::bench
