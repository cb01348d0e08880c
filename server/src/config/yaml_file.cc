#include "config/yaml_file.h"

#include <sys/stat.h>

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

Result<YAML::Node> ParseYaml(const std::string& text, std::string_view source) {
  try {
    // Every document is parsed (YAML::Load stops after the first, so a "---" would drop the rest
    // of the file unread); only one may hold anything.
    std::vector<YAML::Node> documents = YAML::LoadAll(text);
    YAML::Node found;
    for (const YAML::Node& document : documents) {
      if (document.IsNull()) continue;
      if (found.IsDefined() && !found.IsNull()) {
        const int line = YamlLine(document);
        return Status::InvalidArgument(
            (line > 0 ? std::string(source) + ":" + std::to_string(line) : std::string(source)) +
            ": a second YAML document (after \"---\"); the file must hold one");
      }
      found = document;
    }
    return found;
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
