#include "number_arg.h"

#include <cstdlib>

#include "report.h"

namespace kvault::bench {

Result<double> ParseNumberArg(std::string_view what, const std::string& text, double min,
                              double max) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(v >= min) || v > max) {
    return Status::InvalidArgument(std::string(what) + " takes a number from " + Format("%g", min) +
                                   " to " + Format("%g", max) + ", got '" + text + "'");
  }
  return v;
}

}  // namespace kvault::bench
