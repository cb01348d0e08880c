#include "trace/mooncake_trace.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <string>
#include <unordered_map>
#include <utility>

#include "kvault/common/file_io.h"

namespace kvault::bench {
namespace {

constexpr int kMaxNesting = 64;                         // for skipped values of unknown keys
constexpr uint64_t kMaxTraceBytes = uint64_t{4} << 30;  // far above any public trace

// A cursor over one line of JSON. Every failure names the line and column.
class LineParser {
 public:
  LineParser(std::string_view line, size_t line_no, std::string_view source)
      : s_(line), line_no_(line_no), source_(source) {}

  Status Parse(TraceRequest& out) {
    SkipSpace();
    if (!Consume('{')) return Error("expected '{' at the start of a request object");
    bool seen_ts = false, seen_in = false, seen_out = false, seen_ids = false;
    SkipSpace();
    if (!Consume('}')) {
      while (true) {
        SkipSpace();
        std::string key;
        KVAULT_RETURN_IF_ERROR(ParseString(key));
        SkipSpace();
        if (!Consume(':')) return Error("expected ':' after key \"" + key + "\"");
        SkipSpace();
        if (key == "timestamp") {
          KVAULT_RETURN_IF_ERROR(Once(seen_ts, key));
          KVAULT_RETURN_IF_ERROR(ParseTimestamp(out.timestamp_ms));
        } else if (key == "input_length") {
          KVAULT_RETURN_IF_ERROR(Once(seen_in, key));
          KVAULT_RETURN_IF_ERROR(ParseUint(out.input_length, key));
        } else if (key == "output_length") {
          KVAULT_RETURN_IF_ERROR(Once(seen_out, key));
          KVAULT_RETURN_IF_ERROR(ParseUint(out.output_length, key));
        } else if (key == "hash_ids") {
          KVAULT_RETURN_IF_ERROR(Once(seen_ids, key));
          KVAULT_RETURN_IF_ERROR(ParseIds(out.hash_ids));
        } else {
          KVAULT_RETURN_IF_ERROR(SkipValue(0));
        }
        SkipSpace();
        if (Consume('}')) break;
        if (!Consume(',')) return Error("expected ',' or '}' after the value of \"" + key + "\"");
      }
    }
    SkipSpace();
    if (pos_ != s_.size()) return Error("unexpected text after the request object");
    if (!seen_ts) return Error("missing \"timestamp\"");
    if (!seen_ids) return Error("missing \"hash_ids\"");
    return Status::Ok();
  }

 private:
  Status Error(const std::string& what) const {
    return Status::InvalidArgument(std::string(source_) + ":" + std::to_string(line_no_) + ":" +
                                   std::to_string(pos_ + 1) + ": " + what);
  }
  Status Once(bool& seen, const std::string& key) const {
    if (seen) return Error("duplicate key \"" + key + "\"");
    seen = true;
    return Status::Ok();
  }

  bool AtEnd() const { return pos_ >= s_.size(); }
  char Peek() const { return AtEnd() ? '\0' : s_[pos_]; }
  bool Consume(char c) {
    if (Peek() != c || AtEnd()) return false;
    ++pos_;
    return true;
  }
  void SkipSpace() {
    while (!AtEnd() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\r')) ++pos_;
  }
  static bool IsDigit(char c) { return c >= '0' && c <= '9'; }

  // A JSON string. Escapes are checked; \u escapes are kept verbatim (keys are plain ASCII).
  Status ParseString(std::string& out) {
    if (!Consume('"')) return Error("expected a string");
    while (true) {
      if (AtEnd()) return Error("unterminated string");
      char c = s_[pos_++];
      if (c == '"') return Status::Ok();
      if (static_cast<unsigned char>(c) < 0x20) return Error("control character in a string");
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (AtEnd()) return Error("unterminated string");
      char e = s_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out.push_back(e);
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u':
          for (int i = 0; i < 4; ++i) {
            if (!std::isxdigit(static_cast<unsigned char>(Peek())) || AtEnd()) {
              return Error("bad \\u escape");
            }
            ++pos_;
          }
          out.append(s_.substr(pos_ - 6, 6));
          break;
        default:
          --pos_;
          return Error("bad escape in a string");
      }
    }
  }

  // Checks the JSON number grammar and returns its text.
  Status ScanNumber(std::string_view& text, bool& integral) {
    size_t start = pos_;
    integral = true;
    Consume('-');
    if (Consume('0')) {
    } else if (IsDigit(Peek()) && !AtEnd()) {
      while (IsDigit(Peek()) && !AtEnd()) ++pos_;
    } else {
      return Error("expected a number");
    }
    if (Consume('.')) {
      integral = false;
      if (!IsDigit(Peek()) || AtEnd()) return Error("expected a digit after '.'");
      while (IsDigit(Peek()) && !AtEnd()) ++pos_;
    }
    if (Peek() == 'e' || Peek() == 'E') {
      integral = false;
      ++pos_;
      if (!Consume('+')) Consume('-');
      if (!IsDigit(Peek()) || AtEnd()) return Error("expected a digit in the exponent");
      while (IsDigit(Peek()) && !AtEnd()) ++pos_;
    }
    text = s_.substr(start, pos_ - start);
    return Status::Ok();
  }

  Status ParseUint(uint64_t& out, std::string_view what) {
    size_t start = pos_;
    std::string_view text;
    bool integral = false;
    KVAULT_RETURN_IF_ERROR(ScanNumber(text, integral));
    if (!integral || text[0] == '-') {
      pos_ = start;
      return Error(std::string(what) + " must be a non-negative integer, got " + std::string(text));
    }
    uint64_t v = 0;
    for (char c : text) {
      uint64_t d = static_cast<uint64_t>(c - '0');
      if (v > (UINT64_MAX - d) / 10) {
        pos_ = start;
        return Error(std::string(what) + " is larger than 2^64-1");
      }
      v = v * 10 + d;
    }
    out = v;
    return Status::Ok();
  }

  Status ParseTimestamp(double& out) {
    size_t start = pos_;
    std::string_view text;
    bool integral = false;
    KVAULT_RETURN_IF_ERROR(ScanNumber(text, integral));
    std::string copy(text);
    double v = std::strtod(copy.c_str(), nullptr);
    if (!std::isfinite(v) || v < 0) {
      pos_ = start;
      return Error("timestamp must be a finite non-negative number, got " + copy);
    }
    out = v;
    return Status::Ok();
  }

  Status ParseIds(std::vector<uint64_t>& ids) {
    if (!Consume('[')) return Error("hash_ids must be an array");
    SkipSpace();
    if (Consume(']')) return Status::Ok();
    while (true) {
      SkipSpace();
      uint64_t id = 0;
      KVAULT_RETURN_IF_ERROR(ParseUint(id, "a hash id"));
      ids.push_back(id);
      SkipSpace();
      if (Consume(']')) return Status::Ok();
      if (!Consume(',')) return Error("expected ',' or ']' in hash_ids");
    }
  }

  Status SkipLiteral(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return Error("unexpected character");
    pos_ += word.size();
    return Status::Ok();
  }

  Status SkipValue(int depth) {
    if (depth > kMaxNesting) return Error("value nested too deeply");
    char c = Peek();
    if (AtEnd()) return Error("expected a value");
    if (c == '"') {
      std::string ignored;
      return ParseString(ignored);
    }
    if (c == 't') return SkipLiteral("true");
    if (c == 'f') return SkipLiteral("false");
    if (c == 'n') return SkipLiteral("null");
    if (c == '[' || c == '{') {
      const char close = c == '[' ? ']' : '}';
      ++pos_;
      SkipSpace();
      if (Consume(close)) return Status::Ok();
      while (true) {
        SkipSpace();
        if (close == '}') {
          std::string key;
          KVAULT_RETURN_IF_ERROR(ParseString(key));
          SkipSpace();
          if (!Consume(':')) return Error("expected ':' after a key");
          SkipSpace();
        }
        KVAULT_RETURN_IF_ERROR(SkipValue(depth + 1));
        SkipSpace();
        if (Consume(close)) return Status::Ok();
        if (!Consume(',')) return Error(std::string("expected ',' or '") + close + "'");
      }
    }
    std::string_view text;
    bool integral = false;
    return ScanNumber(text, integral);
  }

  std::string_view s_;
  size_t pos_ = 0;
  size_t line_no_;
  std::string_view source_;
};

bool IsBlank(std::string_view line) {
  return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

}  // namespace

Result<std::vector<TraceRequest>> ParseMooncakeTrace(std::string_view text,
                                                     std::string_view source) {
  std::vector<TraceRequest> requests;
  size_t line_no = 0;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(begin, end - begin);
    ++line_no;
    begin = end + 1;
    if (IsBlank(line)) continue;
    TraceRequest request;
    KVAULT_RETURN_IF_ERROR(LineParser(line, line_no, source).Parse(request));
    requests.push_back(std::move(request));
  }
  std::stable_sort(
      requests.begin(), requests.end(),
      [](const TraceRequest& a, const TraceRequest& b) { return a.timestamp_ms < b.timestamp_ms; });
  return requests;
}

Result<std::vector<TraceRequest>> ReadMooncakeTrace(const std::string& path) {
  KVAULT_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadWholeFile(path, kMaxTraceBytes));
  std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  return ParseMooncakeTrace(text, path);
}

BlockTrace MakeBlockTrace(std::span<const TraceRequest> requests) {
  BlockTrace trace;
  std::unordered_map<uint64_t, uint32_t> dense;
  trace.request_begin.reserve(requests.size() + 1);
  trace.request_begin.push_back(0);
  for (const TraceRequest& r : requests) {
    uint32_t prev = BlockTrace::kRoot;
    for (uint64_t h : r.hash_ids) {
      auto [it, inserted] = dense.try_emplace(h, static_cast<uint32_t>(trace.hash_ids.size()));
      if (inserted) {
        trace.hash_ids.push_back(h);
        trace.parent.push_back(prev);
      } else if (trace.parent[it->second] != prev) {
        trace.prefix_consistent = false;
      }
      trace.blocks.push_back(it->second);
      prev = it->second;
    }
    trace.request_begin.push_back(trace.blocks.size());
  }
  trace.unique_blocks = static_cast<uint32_t>(trace.hash_ids.size());
  return trace;
}

uint64_t CapacityForFraction(const BlockTrace& trace, double fraction) {
  if (!(fraction > 0)) return 0;
  return static_cast<uint64_t>(std::floor(fraction * static_cast<double>(trace.unique_blocks)));
}

}  // namespace kvault::bench
