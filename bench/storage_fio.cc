// The fio baseline of `kvault-bench storage` and the child-process helper it shares with the
// memory check. fio reports JSON (--output-format=json); a small reader turns it into bench::Json.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "report.h"
#include "signal_cleanup.h"
#include "storage_bench.h"

extern char** environ;

namespace kvault::bench::storage_bench {
namespace {

// A JSON reader for what fio prints: objects, arrays, strings, numbers, literals. Numbers become
// doubles; \u escapes become '?' (fio's names and values are ASCII).
class JsonReader {
 public:
  explicit JsonReader(std::string_view text) : text_(text) {}

  Result<Json> Document() {
    KVAULT_ASSIGN_OR_RETURN(Json value, Value(0));
    SkipSpace();
    if (pos_ != text_.size()) return Error("trailing text");
    return value;
  }

 private:
  static constexpr int kMaxDepth = 64;

  Status Error(const std::string& what) const {
    return Status::Corruption("fio JSON: " + what + " at offset " + std::to_string(pos_));
  }
  void SkipSpace() {
    while (pos_ < text_.size() && std::strchr(" \t\r\n", text_[pos_]) != nullptr) ++pos_;
  }
  bool Consume(char c) {
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  Result<Json> Value(int depth) {
    if (depth > kMaxDepth) return Error("nesting too deep");
    SkipSpace();
    if (pos_ >= text_.size()) return Error("unexpected end");
    const char c = text_[pos_];
    if (c == '{') return Object(depth);
    if (c == '[') return Array(depth);
    if (c == '"') {
      KVAULT_ASSIGN_OR_RETURN(std::string s, String());
      return Json(std::move(s));
    }
    for (const auto& [word, value] : {std::pair<std::string_view, Json>{"true", Json(true)},
                                      {"false", Json(false)},
                                      {"null", Json()}}) {
      if (text_.substr(pos_, word.size()) == word) {
        pos_ += word.size();
        return value;
      }
    }
    const std::string rest(text_.substr(pos_, 64));
    char* end = nullptr;
    const double d = std::strtod(rest.c_str(), &end);
    if (end == rest.c_str()) return Error("unexpected character");
    pos_ += end - rest.c_str();
    return Json(d);
  }

  Result<Json> Object(int depth) {
    ++pos_;  // '{'
    Json::Object members;
    if (Consume('}')) return Json(std::move(members));
    do {
      SkipSpace();
      KVAULT_ASSIGN_OR_RETURN(std::string name, String());
      if (!Consume(':')) return Error("expected ':'");
      KVAULT_ASSIGN_OR_RETURN(Json value, Value(depth + 1));
      members.emplace_back(std::move(name), std::move(value));
    } while (Consume(','));
    if (!Consume('}')) return Error("expected '}'");
    return Json(std::move(members));
  }

  Result<Json> Array(int depth) {
    ++pos_;  // '['
    Json::Array items;
    if (Consume(']')) return Json(std::move(items));
    do {
      KVAULT_ASSIGN_OR_RETURN(Json value, Value(depth + 1));
      items.push_back(std::move(value));
    } while (Consume(','));
    if (!Consume(']')) return Error("expected ']'");
    return Json(std::move(items));
  }

  Result<std::string> String() {
    if (pos_ >= text_.size() || text_[pos_] != '"') return Error("expected a string");
    ++pos_;
    std::string out;
    while (pos_ < text_.size() && text_[pos_] != '"') {
      char c = text_[pos_++];
      if (c == '\\') {
        if (pos_ >= text_.size()) break;
        c = text_[pos_++];
        if (c == 'u') {
          pos_ += 4;
          c = '?';
        } else if (c == 'n') {
          c = '\n';
        } else if (c == 't') {
          c = '\t';
        }
      }
      out += c;
    }
    if (pos_ >= text_.size()) return Error("unterminated string");
    ++pos_;
    return out;
  }

  std::string_view text_;
  size_t pos_ = 0;
};

// Member `name` of an object, or nullptr.
const Json* Member(const Json* j, std::string_view name) {
  if (j == nullptr) return nullptr;
  const auto* object = std::get_if<Json::Object>(&j->value);
  if (object == nullptr) return nullptr;
  for (const auto& [key, value] : *object) {
    if (key == name) return &value;
  }
  return nullptr;
}

double Number(const Json* j) {
  if (j == nullptr) return 0;
  if (const auto* d = std::get_if<double>(&j->value)) return *d;
  if (const auto* i = std::get_if<int64_t>(&j->value)) return static_cast<double>(*i);
  return 0;
}

struct FioFigures {
  double gbps = 0, p50_us = 0, p99_us = 0;
};

// Runs one fio job and returns the figures of its `direction` ("read" or "write").
Result<FioFigures> RunFioJob(const Config& c, std::vector<std::string> argv,
                             std::string_view direction) {
  argv.insert(argv.begin(), c.fio);
  argv.push_back("--output-format=json");
  KVAULT_ASSIGN_OR_RETURN(ProcessResult run, RunProcess(argv));
  if (run.exit_code != 0) {
    return Status::IoError("fio exited with " + std::to_string(run.exit_code) + ": " + run.out);
  }
  // fio may print notes before the document.
  const size_t start = run.out.find('{');
  if (start == std::string::npos) return Status::Corruption("fio printed no JSON: " + run.out);
  KVAULT_ASSIGN_OR_RETURN(Json doc, JsonReader(std::string_view(run.out).substr(start)).Document());
  const Json* jobs = Member(&doc, "jobs");
  const auto* list = jobs == nullptr ? nullptr : std::get_if<Json::Array>(&jobs->value);
  if (list == nullptr || list->empty()) return Status::Corruption("fio JSON: no jobs");
  const Json* figures = Member(&list->front(), direction);
  if (figures == nullptr) return Status::Corruption("fio JSON: no " + std::string(direction));
  const Json* percentiles = Member(Member(figures, "clat_ns"), "percentile");
  FioFigures out;
  out.gbps = Number(Member(figures, "bw_bytes")) / 1e9;
  out.p50_us = Number(Member(percentiles, "50.000000")) / 1e3;
  out.p99_us = Number(Member(percentiles, "99.000000")) / 1e3;
  if (out.gbps <= 0) return Status::Corruption("fio JSON: no bandwidth");
  return out;
}

}  // namespace

Result<ProcessResult> RunProcess(const std::vector<std::string>& argv) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Status::IoError("pipe: " + std::string(strerror(errno)));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // The child starts with the signals kvault-bench blocks for its cleanup thread unblocked.
  // (fio's job processes, in sessions of their own, exit when fio is killed.)
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc == 0) RegisterChild(pid);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    return Status::Unavailable("cannot run " + argv[0] + ": " + strerror(rc));
  }
  ProcessResult out;
  char buf[4096];
  for (;;) {
    const ssize_t got = ::read(fds[0], buf, sizeof buf);
    if (got > 0) {
      out.out.append(buf, static_cast<size_t>(got));
    } else if (got == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      UnregisterChild(pid);
      return Status::IoError("waitpid: " + std::string(strerror(errno)));
    }
  }
  UnregisterChild(pid);
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

std::string FioFilePath(const std::string& dir) {
  return (std::filesystem::path(dir) / "fio-baseline.dat").string();
}

void RemoveFioFile(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove(FioFilePath(dir), ec);
}

namespace {

// What every fio job of the baseline shares: 1 MiB blocks at queue depth 1 on fio's file.
std::vector<std::string> FioCommonArgs(const Config& c, const std::string& dir, bool direct) {
  return {"--filename=" + FioFilePath(dir),
          "--bs=1M",
          "--size=" + std::to_string(c.fio_bytes),
          "--ioengine=psync",
          "--iodepth=1",
          "--numjobs=1",
          direct ? "--direct=1" : "--direct=0"};
}

std::vector<std::string> RandReadArgs(const Config& c, const std::string& dir, bool direct,
                                      uint32_t seconds) {
  std::vector<std::string> read = FioCommonArgs(c, dir, direct);
  read.insert(read.end(), {"--name=randread", "--rw=randread", "--time_based",
                           "--runtime=" + std::to_string(seconds)});
  return read;
}

}  // namespace

Result<FioRun> RunFio(const Config& c, const std::string& dir, bool direct, bool keep_file) {
  std::vector<std::string> write = FioCommonArgs(c, dir, direct);
  write.insert(write.end(), {"--name=seqwrite", "--rw=write", "--end_fsync=1"});
  Result<FioFigures> w = RunFioJob(c, write, "write");
  Result<FioFigures> r =
      w.ok() ? RunFioJob(c, RandReadArgs(c, dir, direct, c.fio_seconds), "read") : w.status();
  if (!r.ok() || !keep_file) RemoveFioFile(dir);
  if (!r.ok()) return r.status();
  FioRun out;
  out.write_gbps = w->gbps;
  out.write_p50_us = w->p50_us;
  out.write_p99_us = w->p99_us;
  out.read_gbps = r->gbps;
  out.read_p50_us = r->p50_us;
  out.read_p99_us = r->p99_us;
  return out;
}

Result<double> RunFioRandRead(const Config& c, const std::string& dir, bool direct,
                              uint32_t seconds) {
  KVAULT_ASSIGN_OR_RETURN(FioFigures r,
                          RunFioJob(c, RandReadArgs(c, dir, direct, seconds), "read"));
  return r.gbps;
}

}  // namespace kvault::bench::storage_bench
