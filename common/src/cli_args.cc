#include "kvault/common/cli_args.h"

#include <algorithm>
#include <charconv>

namespace kvault {

Result<CliArgs> CliArgs::Parse(const std::vector<std::string>& args,
                               const std::set<std::string>& value_flags,
                               const std::set<std::string>& bool_flags) {
  CliArgs out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {  // everything after is positional, even if it starts with "--"
      out.positional_.insert(out.positional_.end(), args.begin() + i + 1, args.end());
      break;
    }
    if (a.size() < 2 || a.compare(0, 2, "--") != 0) {
      out.positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2);
    std::optional<std::string> value;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    if (out.values_.count(name) != 0) return Status::InvalidArgument("--" + name + " given twice");
    if (bool_flags.count(name) != 0) {
      if (value) return Status::InvalidArgument("--" + name + " takes no value");
      out.values_[name] = "true";
    } else if (value_flags.count(name) != 0) {
      if (!value) {
        if (i + 1 >= args.size()) return Status::InvalidArgument("--" + name + " needs a value");
        value = args[++i];
      }
      out.values_[name] = *value;
    } else {
      return Status::InvalidArgument("unknown option --" + name + " (see --help)");
    }
  }
  return out;
}

std::optional<std::string> CliArgs::Get(std::string_view name) const {
  auto it = values_.find(std::string(name));
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string CliArgs::GetOr(std::string_view name, std::string_view fallback) const {
  auto v = Get(name);
  return v ? *v : std::string(fallback);
}

Result<uint64_t> CliArgs::GetUint(std::string_view name, uint64_t fallback, uint64_t min,
                                  uint64_t max) const {
  auto v = Get(name);
  if (!v) return fallback;
  return ParseUintArg("--" + std::string(name), *v, min, max);
}

Result<uint64_t> ParseUintArg(std::string_view what, std::string_view text, uint64_t min,
                              uint64_t max) {
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() || v < min || v > max) {
    return Status::InvalidArgument(std::string(what) + " must be an integer in " +
                                   std::to_string(min) + ".." + std::to_string(max) + ", got '" +
                                   std::string(text) + "'");
  }
  return v;
}

Status CliArgs::RejectPositional() const {
  if (positional_.empty()) return Status::Ok();
  return Status::InvalidArgument("unexpected argument '" + positional_[0] + "'");
}

bool WantsHelp(const std::vector<std::string>& args) {
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h") return true;
  }
  return false;
}

bool IsUcxTransportList(std::string_view text, bool allow_empty) {
  if (text.empty()) return allow_empty;
  if (text.front() == '^') text.remove_prefix(1);
  while (true) {
    const size_t end = std::min(text.find(','), text.size());
    const std::string_view name = text.substr(0, end);
    if (name.empty() ||
        name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") != std::string_view::npos) {
      return false;
    }
    if (end == text.size()) return true;
    text.remove_prefix(end + 1);
  }
}

}  // namespace kvault
