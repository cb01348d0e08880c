// Child processes of `kvault-bench store` (kvaultd, redis-server, ucx_perftest), free ports and
// /proc figures.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "kvault/common/errno_text.h"
#include "signal_cleanup.h"
#include "store_bench.h"

extern char** environ;

namespace kvault::bench::store_bench {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The environment for the child: ours, with `overrides` ("NAME=value") replacing or adding.
std::vector<std::string> ChildEnvironment(const std::vector<std::string>& overrides) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    const std::string name = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const std::string& o : overrides) replaced |= o.substr(0, o.find('=')) == name;
    if (!replaced) env.push_back(entry);
  }
  env.insert(env.end(), overrides.begin(), overrides.end());
  return env;
}

// `program` as run: itself when it holds a '/', else the first executable match in PATH; made
// absolute (the child may run in another working directory), or empty.
std::string Absolute(const std::string& path) {
  if (path[0] == '/') return path;
  char cwd[4096];
  return ::getcwd(cwd, sizeof cwd) != nullptr ? std::string(cwd) + "/" + path : "";
}

std::string Resolve(const std::string& program) {
  if (program.find('/') != std::string::npos) return Absolute(program);
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return Absolute(candidate);
  }
  return "";
}

std::vector<char*> Pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

bool CanExecute(const std::string& program) {
  const std::string path = Resolve(program);
  return !path.empty() && ::access(path.c_str(), X_OK) == 0;
}

Result<std::unique_ptr<ChildProcess>> ChildProcess::Start(const Options& options) {
  if (options.argv.empty()) return Status::InvalidArgument("no program");
  const std::string path = Resolve(options.argv[0]);
  if (path.empty() || ::access(path.c_str(), X_OK) != 0) {
    return Status::Unavailable("cannot run " + options.argv[0] + ": not found or not executable");
  }
  // Everything the child needs is prepared here: between fork and exec only async-signal-safe
  // calls are allowed (this process has threads).
  std::vector<std::string> argv = options.argv;
  std::vector<std::string> env = ChildEnvironment(options.env);
  std::vector<char*> argv_ptrs = Pointers(argv), env_ptrs = Pointers(env);
  const std::string err_path = options.stderr_file.empty() ? "/dev/null" : options.stderr_file;
  int out[2] = {-1, -1};
  int out_file = -1;
  if (options.stdout_file.empty()) {
    if (::pipe2(out, O_CLOEXEC) != 0) return Status::IoError(ErrnoText("pipe"));
  } else {
    out_file = ::open(options.stdout_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out_file < 0) return Status::IoError(ErrnoText(("open " + options.stdout_file).c_str()));
  }
  const int err_file = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (err_file < 0) {
    if (out[0] >= 0) ::close(out[0]), ::close(out[1]);
    if (out_file >= 0) ::close(out_file);
    return Status::IoError(ErrnoText(("open " + err_path).c_str()));
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const Status s = Status::IoError(ErrnoText("fork"));
    if (out[0] >= 0) ::close(out[0]), ::close(out[1]);
    if (out_file >= 0) ::close(out_file);
    ::close(err_file);
    return s;
  }
  if (pid == 0) {
    // Dies with the benchmark, even when the benchmark is killed.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    UnblockCleanupSignals();
    ::dup2(out_file >= 0 ? out_file : out[1], STDOUT_FILENO);
    ::dup2(err_file, STDERR_FILENO);
    if (!options.dir.empty() && ::chdir(options.dir.c_str()) != 0) ::_exit(127);
    ::execve(path.c_str(), argv_ptrs.data(), env_ptrs.data());
    ::_exit(127);
  }
  RegisterChild(pid);
  ::close(err_file);
  if (out_file >= 0) ::close(out_file);
  if (out[1] >= 0) ::close(out[1]);
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid, out[0]));
}

ChildProcess::~ChildProcess() {
  Stop(0);
  if (out_fd_ >= 0) ::close(out_fd_);
}

bool ChildProcess::running() { return !Wait(0).has_value(); }

std::optional<int> ChildProcess::Wait(double timeout_s) {
  const double until = Now() + timeout_s;
  while (!reaped_) {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      UnregisterChild(pid_);
      break;
    }
    if (r < 0 && errno != EINTR) {
      reaped_ = true;  // not our child any more
      UnregisterChild(pid_);
      break;
    }
    if (Now() >= until) return std::nullopt;
    ::usleep(2000);
  }
  return exit_code_;
}

void ChildProcess::Stop(double grace_s) {
  if (reaped_) return;
  if (grace_s > 0) {
    ::kill(pid_, SIGTERM);
    if (Wait(grace_s).has_value()) return;
  }
  ::kill(pid_, SIGKILL);
  Wait(10);
}

Result<std::string> ChildProcess::ReadLineWith(const std::string& needle, double timeout_s) {
  if (out_fd_ < 0) return Status::InvalidArgument("stdout is not a pipe");
  const double until = Now() + timeout_s;
  for (;;) {
    size_t newline;
    while ((newline = buffered_.find('\n')) != std::string::npos) {
      std::string line = buffered_.substr(0, newline);
      buffered_.erase(0, newline + 1);
      if (line.find(needle) != std::string::npos) return line;
    }
    const double left = until - Now();
    if (left <= 0) return Status::Unavailable("no line with '" + needle + "' in time");
    pollfd p{out_fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left * 1000) + 1);
    if (ready < 0 && errno != EINTR) return Status::IoError(ErrnoText("poll"));
    if (ready <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(out_fd_, buf, sizeof buf);
    if (n == 0) return Status::Unavailable("output ended before a line with '" + needle + "'");
    if (n < 0 && errno != EINTR) return Status::IoError(ErrnoText("read"));
    if (n > 0) buffered_.append(buf, static_cast<size_t>(n));
  }
}

Result<std::string> ChildProcess::ReadAll(double timeout_s) {
  if (out_fd_ < 0) return Status::InvalidArgument("stdout is not a pipe");
  const double until = Now() + timeout_s;
  for (;;) {
    const double left = until - Now();
    if (left <= 0) return Status::Unavailable("output did not end in time");
    pollfd p{out_fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left * 1000) + 1);
    if (ready < 0 && errno != EINTR) return Status::IoError(ErrnoText("poll"));
    if (ready <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(out_fd_, buf, sizeof buf);
    if (n == 0) return std::move(buffered_);
    if (n < 0 && errno != EINTR) return Status::IoError(ErrnoText("read"));
    if (n > 0) buffered_.append(buf, static_cast<size_t>(n));
  }
}

Result<uint16_t> FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::IoError(ErrnoText("socket"));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const Status s = Status::IoError(ErrnoText("bind 127.0.0.1:0"));
    ::close(fd);
    return s;
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool PortListening(uint16_t port) {
  char hex[8];
  std::snprintf(hex, sizeof hex, ":%04X", port);
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream f(table);
    std::string line;
    std::getline(f, line);  // header
    while (std::getline(f, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state;
      fields >> slot >> local >> remote >> state;
      if (state == "0A" && local.size() > 5 && local.compare(local.size() - 5, 5, hex) == 0) {
        return true;
      }
    }
  }
  return false;
}

ProcMemory ReadProcMemory(pid_t pid) {
  ProcMemory m;
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string name = line.substr(0, colon);
    const uint64_t bytes = std::strtoull(line.c_str() + colon + 1, nullptr, 10) * 1024;  // kB
    if (name == "VmRSS") m.rss = bytes;
    if (name == "VmHWM") m.hwm = bytes;
    if (name == "RssAnon") m.anon = bytes;
    if (name == "RssShmem") m.shmem = bytes;
  }
  return m;
}

std::string ExecutableDir() {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "." : self.parent_path().string();
}

struct RssSampler::State {
  pid_t pid;
  std::mutex mu;
  std::condition_variable cv;
  bool running = false;
  ProcMemory peak;
  std::thread thread;
  void Keep(const ProcMemory& m) {  // with mu held
    peak.rss = std::max(peak.rss, m.rss);
    peak.anon = std::max(peak.anon, m.anon);
    peak.shmem = std::max(peak.shmem, m.shmem);
    if (m.hwm != 0) peak.hwm = m.hwm;
  }
};

RssSampler::RssSampler(pid_t pid) : state_(std::make_unique<State>()) { state_->pid = pid; }

RssSampler::~RssSampler() { Stop(); }

void RssSampler::Start() {
  State& s = *state_;
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.running) return;
  s.running = true;
  s.thread = std::thread([&s] {
    std::unique_lock<std::mutex> lock(s.mu);
    while (s.running) {
      lock.unlock();
      const ProcMemory now = ReadProcMemory(s.pid);
      lock.lock();
      s.Keep(now);
      s.cv.wait_for(lock, std::chrono::milliseconds(20), [&s] { return !s.running; });
    }
  });
}

void RssSampler::Stop() {
  State& s = *state_;
  std::thread thread;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (!s.running) return;
    s.running = false;
    thread = std::move(s.thread);
  }
  s.cv.notify_all();
  thread.join();
  // One last sample: the end of the window counts too.
  const ProcMemory now = ReadProcMemory(s.pid);
  std::lock_guard<std::mutex> lock(s.mu);
  s.Keep(now);
}

ProcMemory RssSampler::peak() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->peak;
}

}  // namespace kvault::bench::store_bench
