#include "report.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>

#include "kvault/common/file_io.h"

namespace kvault::bench {
namespace {

void Escape(const std::string& s, std::string& out) {
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += Format("\\u%04x", c);
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

void DumpInto(const Json& j, int indent, std::string& out) {
  const std::string pad(indent * 2 + 2, ' ');
  const std::string close_pad(indent * 2, ' ');
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::nullptr_t>) {
          out += "null";
        } else if constexpr (std::is_same_v<T, bool>) {
          out += v ? "true" : "false";
        } else if constexpr (std::is_same_v<T, double>) {
          out += std::isfinite(v) ? Format("%.6g", v) : "null";
        } else if constexpr (std::is_same_v<T, int64_t>) {
          out += std::to_string(v);
        } else if constexpr (std::is_same_v<T, std::string>) {
          Escape(v, out);
        } else if constexpr (std::is_same_v<T, Json::Object>) {
          if (v.empty()) {
            out += "{}";
            return;
          }
          out += "{\n";
          for (size_t i = 0; i < v.size(); ++i) {
            out += pad;
            Escape(v[i].first, out);
            out += ": ";
            DumpInto(v[i].second, indent + 1, out);
            out += i + 1 < v.size() ? ",\n" : "\n";
          }
          out += close_pad + "}";
        } else {
          if (v.empty()) {
            out += "[]";
            return;
          }
          out += "[\n";
          for (size_t i = 0; i < v.size(); ++i) {
            out += pad;
            DumpInto(v[i], indent + 1, out);
            out += i + 1 < v.size() ? ",\n" : "\n";
          }
          out += close_pad + "]";
        }
      },
      j.value);
}

}  // namespace

std::string Json::Dump(int indent) const {
  std::string out;
  DumpInto(*this, indent, out);
  return out;
}

Status WriteJsonFile(const std::string& path, const Json& json) {
  const std::string text = json.Dump() + "\n";
  return WriteFileAtomic(path, {reinterpret_cast<const uint8_t*>(text.data()), text.size()});
}

std::string Table::Render() const {
  std::vector<size_t> width(header_.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], row[i].size());
    }
  };
  measure(header_);
  for (const auto& r : rows_) measure(r);
  auto render_row = [&](const std::vector<std::string>& row, std::string& out) {
    for (size_t i = 0; i < width.size(); ++i) {
      const std::string cell = i < row.size() ? row[i] : "";
      const std::string fill(width[i] - cell.size(), ' ');
      out += i == 0 ? cell + fill : fill + cell;
      out += i + 1 < width.size() ? "  " : "\n";
    }
  };
  std::string out;
  render_row(header_, out);
  size_t total = 0;
  for (size_t w : width) total += w + 2;
  out += std::string(total - 2, '-') + "\n";
  for (const auto& r : rows_) render_row(r, out);
  return out;
}

std::string Format(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char buf[512];
  const int n = std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return std::string(buf, std::min<size_t>(n < 0 ? 0 : n, sizeof(buf) - 1));
}

double Median(std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  const size_t n = samples.size();
  return n % 2 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]);
}

double Percentile(std::vector<double>& samples, double p) {
  std::sort(samples.begin(), samples.end());
  const size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * samples.size()));
  return samples[std::clamp<size_t>(rank, 1, samples.size()) - 1];
}

}  // namespace kvault::bench
