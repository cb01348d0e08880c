#include "config/config_loader.h"

#include <optional>
#include <set>
#include <utility>

#include "config/options.h"
#include "config/yaml_file.h"

namespace kvault::server {
namespace {

constexpr size_t kHelpWidth = 100;

// The sections of the YAML file: the first components of dotted keys ("control", "limits").
bool IsSection(std::string_view path) {
  for (const OptionDescriptor& option : DaemonOptions()) {
    const std::string_view key = option.key;
    if (key.size() > path.size() && key.substr(0, path.size()) == path && key[path.size()] == '.') {
      return true;
    }
  }
  return false;
}

const OptionDescriptor* FindOptionByKey(std::string_view key) {
  for (const OptionDescriptor& option : DaemonOptions()) {
    if (option.key == key) return &option;
  }
  return nullptr;
}

bool TakesText(OptionType type) { return type == OptionType::kString || type == OptionType::kPath; }

class YamlApplier {
 public:
  YamlApplier(std::string_view source, DaemonConfig& config) : source_(source), config_(config) {}

  Status ApplyMap(const YAML::Node& map, const std::string& prefix) {
    for (const auto& entry : map) {
      const YAML::Node& key_node = entry.first;
      const YAML::Node& value = entry.second;
      const int line = YamlLine(key_node);
      if (!key_node.IsScalar())
        return Error(line, prefix.empty() ? "(top level)" : prefix, "a key must be a plain name");
      const std::string path =
          prefix.empty() ? key_node.Scalar() : prefix + "." + key_node.Scalar();
      if (!seen_.insert(path).second) return Error(line, path, "given twice");
      if (const OptionDescriptor* option = FindOptionByKey(path)) {
        KVAULT_RETURN_IF_ERROR(ApplyValue(*option, value, line, path));
      } else if (IsSection(path)) {
        if (value.IsNull()) continue;  // every key of the section commented out: no change
        if (!value.IsMap()) {
          return Error(
              line, path,
              "expected a map of " + path + ".* options, got " + std::string(YamlKindName(value)));
        }
        KVAULT_RETURN_IF_ERROR(ApplyMap(value, path));
      } else {
        return Error(line, path, "unknown key (kvaultd --help lists every option)");
      }
    }
    return Status::Ok();
  }

 private:
  Status ApplyValue(const OptionDescriptor& option, const YAML::Node& value, int line,
                    const std::string& path) {
    std::string text;
    if (value.IsScalar()) {
      text = value.Scalar();
    } else if (value.IsNull() && TakesText(option.type)) {
      text.clear();  // `tls.cert_file:` with nothing after it means "none"
    } else {
      return Error(
          line, path,
          "expected " + ValuePlaceholder(option) + ", got " + std::string(YamlKindName(value)));
    }
    Status s = SetOption(option, text, config_);
    if (!s.ok()) return Error(line, path, s.message());
    return Status::Ok();
  }

  Status Error(int line, std::string_view path, std::string_view what) const {
    std::string where(source_);
    if (line > 0) where += ":" + std::to_string(line);
    return Status::InvalidArgument(where + ": " + std::string(path) + ": " + std::string(what));
  }

  std::string_view source_;
  DaemonConfig& config_;
  std::set<std::string> seen_;
};

struct FlagValue {
  const OptionDescriptor* option;
  std::string flag;  // as written, for errors
  std::string value;
};

// Appends `text` to `out` wrapped at kHelpWidth with every line indented by `indent` spaces.
void AppendWrapped(std::string& out, std::string_view text, size_t indent) {
  size_t column = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find(' ', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view word = text.substr(pos, end - pos);
    if (column == 0) {
      out.append(indent, ' ');
      column = indent;
    } else if (column + 1 + word.size() > kHelpWidth) {
      out += '\n';
      out.append(indent, ' ');
      column = indent;
    } else {
      out += ' ';
      ++column;
    }
    out += word;
    column += word.size();
    pos = end + 1;
  }
  out += '\n';
}

std::string YamlQuoted(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[(c >> 4) & 0xf];
      out += kHex[c & 0xf];
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace

Status ApplyConfigYaml(const std::string& yaml_text, std::string_view source,
                       DaemonConfig& config) {
  KVAULT_ASSIGN_OR_RETURN(const YAML::Node root, ParseYaml(yaml_text, source));
  if (root.IsNull()) return Status::Ok();  // an empty file changes nothing
  if (!root.IsMap()) {
    return Status::InvalidArgument(std::string(source) +
                                   ": expected a map of options at the top level, got " +
                                   std::string(YamlKindName(root)));
  }
  // The walk avoids the yaml-cpp calls that throw; this is the backstop that keeps any exception
  // inside this module.
  try {
    return YamlApplier(source, config).ApplyMap(root, "");
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(std::string(source) + ": " + e.msg);
  }
}

Status ApplyConfigFile(const std::string& path, DaemonConfig& config) {
  Result<std::string> text = ReadYamlFile(path);
  if (!text.ok()) return text.status().WithContext("--config");
  return ApplyConfigYaml(*text, path, config);
}

Result<DaemonInvocation> LoadDaemonConfig(const std::vector<std::string>& args) {
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h") return DaemonInvocation{DaemonAction::kHelp, {}, {}};
  }
  DaemonInvocation out;
  std::optional<std::string> config_file;
  std::vector<FlagValue> flags;
  std::set<const OptionDescriptor*> given;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.size() <= 2 || a.compare(0, 2, "--") != 0) {
      return Status::InvalidArgument("unexpected argument '" + a +
                                     "': kvaultd takes only --options (see --help)");
    }
    std::string name = a.substr(2);
    std::optional<std::string> value;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    const bool next_is_value = i + 1 < args.size() && args[i + 1].compare(0, 2, "--") != 0;
    if (name == "print-config") {
      if (value) return Status::InvalidArgument("--print-config takes no value");
      out.action = DaemonAction::kPrintConfig;
      continue;
    }
    if (name == "config") {
      if (config_file) return Status::InvalidArgument("--config given twice");
      if (!value && !next_is_value) return Status::InvalidArgument("--config needs a file");
      config_file = value ? *value : args[++i];
      continue;
    }
    const OptionDescriptor* option = FindOption(name);
    if (option == nullptr) {
      return Status::InvalidArgument("unknown option --" + name + " (see --help)");
    }
    if (!given.insert(option).second) {
      return Status::InvalidArgument("--" + name + ": " + std::string(option->key) +
                                     " given twice");
    }
    if (!value) {
      if (option->type == OptionType::kBool) {
        const bool explicit_value =
            next_is_value && (args[i + 1] == "true" || args[i + 1] == "false");
        value = explicit_value ? args[++i] : "true";
      } else if (next_is_value) {
        value = args[++i];
      } else {
        return Status::InvalidArgument("--" + name + " needs a value (" +
                                       ValuePlaceholder(*option) + ")");
      }
    }
    flags.push_back({option, "--" + name, *value});
  }

  if (config_file) {
    out.config_file = *config_file;
    KVAULT_RETURN_IF_ERROR(ApplyConfigFile(*config_file, out.config));
  }
  for (const FlagValue& f : flags) {
    Status s = SetOption(*f.option, f.value, out.config);
    if (!s.ok()) return s.WithContext(f.flag);
  }
  KVAULT_RETURN_IF_ERROR(ValidateDaemonConfig(out.config));
  return out;
}

std::string DaemonHelpText(std::string_view program) {
  const DaemonConfig defaults;
  std::string out = "Usage: " + std::string(program) + " [--config FILE] [--OPTION VALUE]...\n\n";
  AppendWrapped(out,
                "kvaultd serves the kvault KV-cache store: a control plane (binary protocol), a "
                "UCX data plane and an HTTP endpoint for /metrics, /healthz and /readyz. "
                "Settings come from built-in defaults, then the YAML file given with --config, "
                "then flags; a later source wins. Every YAML key is also a flag: the key with "
                "'.' and '_' written as '-' (storage.host_capacity is --storage-host-capacity; "
                "--storage.host_capacity works too). Sizes take KiB, MiB, GiB, TiB (or KB, MB, "
                "GB, TB); durations take ms, s, m or h. docs/config.md has the details.",
                0);
  out += "\nGeneral:\n";
  out += "  --config FILE\n";
  AppendWrapped(out, "YAML configuration file (example: deploy/config/kvaultd.yaml).", 6);
  out += "  --print-config\n";
  AppendWrapped(out, "Print the effective configuration as YAML and exit.", 6);
  out += "  --help, -h\n";
  AppendWrapped(out, "Print this help and exit.", 6);
  out += "  --memory-gate ...\n";
  AppendWrapped(out,
                "Internal: how kvaultd starts its memory gate, the process that receives the "
                "memory hand-overs of local clients (docs/daemon.md). Not for use by hand; it "
                "exits 2 without the descriptors kvaultd gives it.",
                6);

  std::string section;
  for (const OptionDescriptor& option : DaemonOptions()) {
    const std::string_view key = option.key;
    const size_t dot = key.find('.');
    const std::string this_section =
        dot == std::string_view::npos ? "" : std::string(key.substr(0, dot));
    if (this_section != section || &option == &DaemonOptions().front()) {
      section = this_section;
      out += "\n" + (section.empty() ? std::string("Top-level options") : section + ".* options") +
             ":\n";
    }
    out += "  --" + FlagName(option) + " " + ValuePlaceholder(option) + "\n";
    std::string help(option.help);
    const std::string default_text = OptionValueText(option, defaults);
    help += " [YAML " + std::string(key) + "; default " +
            (default_text.empty() ? std::string("empty") : default_text) + "]";
    AppendWrapped(out, help, 6);
  }
  return out;
}

std::string FormatConfigYaml(const DaemonConfig& config) {
  std::string out = "# kvaultd configuration (kvaultd --print-config)\n";
  std::string section;
  for (const OptionDescriptor& option : DaemonOptions()) {
    const std::string_view key = option.key;
    const size_t dot = key.find('.');
    std::string this_section;
    std::string_view leaf = key;
    if (dot != std::string_view::npos) {
      this_section = std::string(key.substr(0, dot));
      leaf = key.substr(dot + 1);
    }
    if (this_section != section) {
      section = this_section;
      if (!section.empty()) out += section + ":\n";
    }
    std::string value = OptionValueText(option, config);
    if (option.type == OptionType::kString || option.type == OptionType::kPath ||
        option.type == OptionType::kHost) {
      value = YamlQuoted(value);
    }
    out += (section.empty() ? "" : "  ") + std::string(leaf) + ": " + value + "\n";
  }
  return out;
}

}  // namespace kvault::server
