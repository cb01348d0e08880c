#include "config/yaml_file.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace kvault::server {

Result<std::string> ReadYamlFile(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT) return Status::NotFound(path + ": no such file");
    return Status::IoError(path + ": " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) return Status::IoError(path + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > kMaxYamlFileBytes) {
    return Status::InvalidArgument(path + ": larger than " + std::to_string(kMaxYamlFileBytes) +
                                   " bytes; is this the right file?");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IoError(path + ": cannot open: " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::IoError(path + ": read failed");
  return text.str();
}

int LineAfterTheFirstDocument(std::string_view text) {
  enum { kNothing, kStarted, kContent, kEnded } state = kNothing;
  int line = 0;
  size_t at = text.starts_with("\xEF\xBB\xBF") ? 3 : 0;  // a UTF-8 byte order mark is not content
  while (at < text.size()) {
    const size_t end = std::min(text.find('\n', at), text.size());
    const std::string_view l = text.substr(at, end - at);
    at = end + 1;
    ++line;
    // Markers are "---" or "..." in column 0, alone or followed by a space (YAML forbids them
    // there inside any scalar, so no content line can look like one).
    const auto marker = [&](std::string_view m) {
      return l.substr(0, 3) == m && (l.size() == 3 || l[3] == ' ' || l[3] == '\t' || l[3] == '\r');
    };
    const size_t first = l.find_first_not_of(" \t\r");
    const bool blank = first == std::string_view::npos || l[first] == '#';
    if (marker("---") || marker("...")) {
      const bool start = marker("---");
      const size_t rest = l.find_first_not_of(" \t\r", 3);
      const bool inline_content = start && rest != std::string_view::npos && l[rest] != '#';
      if (state == kNothing && start) {  // the first document's own start
        state = inline_content ? kContent : kStarted;
        continue;
      }
      if (inline_content) return line;  // "--- value": a later document with content
      state = kEnded;
    } else if (!blank && !(state == kNothing && l[first] == '%')) {
      if (state == kEnded) return line;
      state = kContent;
    }
  }
  return 0;
}

Result<YAML::Node> ParseYaml(const std::string& text, std::string_view source) {
  // YAML::Load reads the first document only: anything after its end would be dropped unread.
  // (YAML::LoadAll is no way out: yaml-cpp 0.7's loops forever on input as short as ",:".)
  if (const int line = LineAfterTheFirstDocument(text); line > 0) {
    return Status::InvalidArgument(std::string(source) + ":" + std::to_string(line) +
                                   ": content after the first YAML document (a \"---\" or "
                                   "\"...\" line ended it); the file must hold one document");
  }
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    const std::string where = e.mark.is_null()
                                  ? std::string(source)
                                  : std::string(source) + ":" + std::to_string(e.mark.line + 1);
    return Status::InvalidArgument(where + ": invalid YAML: " + e.msg);
  }
}

int YamlLine(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  return mark.is_null() ? 0 : mark.line + 1;
}

std::string_view YamlKindName(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a value";
    default:
      return "nothing";
  }
}

}  // namespace kvault::server
