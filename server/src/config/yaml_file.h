#pragma once
// Reading the small YAML files of kvaultd (config, tenants) with yaml-cpp's exceptions turned into
// Status in one place. Used only from .cc files, so yaml-cpp stays out of other headers.
// Thread-safe (no shared state).

#include <yaml-cpp/yaml.h>

#include <string>
#include <string_view>

#include "kvault/common/result.h"

namespace kvault::server {

// Largest config or tenants file read; anything bigger is a mistake (a wrong path, a device).
inline constexpr size_t kMaxYamlFileBytes = 4u << 20;

// The whole file as text. NotFound when it does not exist, IoError when it cannot be read or is
// not a regular file, InvalidArgument when it is larger than kMaxYamlFileBytes.
Result<std::string> ReadYamlFile(const std::string& path);

// The line (from 1) of the first content after the file's first YAML document has ended (a
// "---" or "..." marker line after it, or a second "---"), 0 when there is none. Comments, blank
// lines, directives and markers are not content.
int LineAfterTheFirstDocument(std::string_view text);

// Parses one YAML document. InvalidArgument "<source>:<line>: <what yaml-cpp says>" for bad
// syntax, and "<source>:<line>: content after the first YAML document" for a second one. An empty
// document gives a null node.
Result<YAML::Node> ParseYaml(const std::string& text, std::string_view source);

// 1-based line of a node, for error messages (0 when yaml-cpp knows none).
int YamlLine(const YAML::Node& node);

// "a map", "a list", "a value" or "nothing", for "expected ..., got ..." messages.
std::string_view YamlKindName(const YAML::Node& node);

}  // namespace kvault::server
