#pragma once
// Loading kvaultd's configuration: built-in defaults, then the YAML file named by --config, then
// flags, a later source overriding an earlier one; then ValidateDaemonConfig. Every error names
// the option and where it came from ("kvaultd.yaml:12: storage.host_capacity: ...",
// "--control-port: ..."). Pure functions apart from reading the files; thread-safe.

#include <string>
#include <string_view>
#include <vector>

#include "config/daemon_config.h"
#include "kvault/common/result.h"

namespace kvault::server {

enum class DaemonAction {
  kRun,          // start the daemon with `config`
  kHelp,         // print DaemonHelpText() and exit 0
  kPrintConfig,  // print FormatConfigYaml(config) and exit 0
};

struct DaemonInvocation {
  DaemonAction action = DaemonAction::kRun;
  DaemonConfig config;
  std::string config_file;  // the --config path, empty when none was given
};

// Parses kvaultd's arguments (without argv[0]): --config FILE, --help / -h, --print-config, and
// one flag per option, written --name VALUE or --name=VALUE where name is the option's flag name
// (--storage-host-capacity) or its YAML key (--storage.host_capacity). A bool flag alone means
// true; --flag=false or --flag false turns it off. --help wins over everything else.
// InvalidArgument for an unknown flag, a missing value, a repeated option, a positional argument,
// a bad value or a failed validation; NotFound / IoError when the config file cannot be read.
Result<DaemonInvocation> LoadDaemonConfig(const std::vector<std::string>& args);

// Applies one YAML document to `config` (keys not in the document keep their value). `source`
// names the document in errors (a path). InvalidArgument for bad syntax, an unknown or repeated
// key, a list or map where a value belongs (or the reverse), and a bad value; the message gives
// source, line and the dotted key. Does not run ValidateDaemonConfig. On error `config` may have
// been partly updated.
Status ApplyConfigYaml(const std::string& yaml_text, std::string_view source, DaemonConfig& config);

// ReadYamlFile + ApplyConfigYaml.
Status ApplyConfigFile(const std::string& path, DaemonConfig& config);

// `kvaultd --help`: usage, load order, value syntax, and every option with its flag, YAML key,
// default and description.
std::string DaemonHelpText(std::string_view program);

// `config` as a YAML document that ApplyConfigYaml accepts and maps back to the same values.
std::string FormatConfigYaml(const DaemonConfig& config);

}  // namespace kvault::server
