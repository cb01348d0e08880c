#pragma once
// StallingFuse: a FUSE file system served by a thread of the test, with one regular file
// ("file", 4 KiB of zeros), whose server stops answering a close or a read coming from a
// running process of another program than the test's (kvaultd, its memory gate); the test, the
// children it forks and exiting processes are answered. What a hostile client could mount and hand
// a descriptor of to kvaultd (any user may mount FUSE through fusermount): the kernel then waits
// for the answer, uninterruptibly once the server has read the request, in whichever process closes
// the file.
//
// Mounting needs CAP_SYS_ADMIN and /dev/fuse: Start() says why when it cannot (tests skip then).
// The destructor aborts the connection through fusectl (/sys/fs/fuse/connections, mounted if it
// is not), so every waiting close or read returns even in a process that still holds a copy of
// the /dev/fuse descriptor (a child forked from the test), then stops the server and unmounts.
//
// Thread-safety: Start, OpenFile and the destructor from the test's thread.

#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace kvault::server {

class StallingFuse {
 public:
  StallingFuse() = default;
  ~StallingFuse() {
    if (thread_.joinable()) {
      Abort();
      const uint64_t one = 1;
      (void)!write(stop_, &one, sizeof one);
      thread_.join();
    }
    if (device_ >= 0) close(device_);  // the last one: aborts the connection too
    if (stop_ >= 0) close(stop_);
    if (!directory_.empty()) {
      umount2(directory_.c_str(), MNT_DETACH);
      rmdir(directory_.c_str());
    }
  }
  StallingFuse(const StallingFuse&) = delete;
  StallingFuse& operator=(const StallingFuse&) = delete;

  // Mounts the file system on a fresh directory and starts serving it. Empty on success, else
  // why it cannot run here.
  std::string Start() {
    char name[] = "/tmp/kvault-fuse-XXXXXX";
    if (mkdtemp(name) == nullptr) return std::string("mkdtemp: ") + std::strerror(errno);
    directory_ = name;
    device_ = open("/dev/fuse", O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (device_ < 0) return std::string("/dev/fuse: ") + std::strerror(errno);
    stop_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop_ < 0) return std::string("eventfd: ") + std::strerror(errno);
    const std::string options =
        "fd=" + std::to_string(device_) + ",rootmode=40000,user_id=0,group_id=0,allow_other";
    if (mount("kvault-test", name, "fuse.kvault-test", MS_NOSUID | MS_NODEV, options.c_str()) !=
        0) {
      const std::string why = std::string("mounting FUSE: ") + std::strerror(errno);
      rmdir(name);
      directory_.clear();
      return why;
    }
    thread_ = std::thread([this] { Serve(); });
    struct stat st {};  // answered by the thread
    if (stat(name, &st) == 0) connection_ = minor(st.st_dev);
    return {};
  }

  // Opens the file read-write (answered: the test's own requests always are).
  int OpenFile() const { return open((directory_ + "/file").c_str(), O_RDWR | O_CLOEXEC); }

  // Requests from other processes that the server read and will never answer.
  int stalled() const { return stalled_.load(); }

  // Ends every request of the connection, answered or not (fusectl's abort file): what frees a
  // process stuck on this file system when a test fails.
  void Abort() const {
    if (connection_ == 0) return;
    const std::string control = "/sys/fs/fuse/connections";
    const std::string abort_file = control + "/" + std::to_string(connection_) + "/abort";
    if (access(abort_file.c_str(), W_OK) != 0) {
      mount("fusectl", control.c_str(), "fusectl", 0, nullptr);
    }
    const int fd = open(abort_file.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return;
    (void)!write(fd, "1", 1);
    close(fd);
  }

 private:
  static constexpr uint64_t kFileNode = 2;
  static constexpr uint64_t kFileBytes = 4096;

  // The program process (or thread) `pid` runs, "" when it cannot be told.
  static std::string ProgramOf(const std::string& pid) {
    char target[4096];
    const ssize_t n = readlink(("/proc/" + pid + "/exe").c_str(), target, sizeof target);
    return n > 0 ? std::string(target, static_cast<size_t>(n)) : std::string();
  }

  void Reply(uint64_t unique, int error, const void* body, size_t bytes) const {
    std::vector<uint8_t> out(sizeof(fuse_out_header) + (error == 0 ? bytes : 0));
    fuse_out_header header{static_cast<uint32_t>(out.size()), error, unique};
    std::memcpy(out.data(), &header, sizeof header);
    if (error == 0 && bytes > 0) std::memcpy(out.data() + sizeof header, body, bytes);
    (void)!write(device_, out.data(), out.size());
  }

  static fuse_attr Attributes(uint64_t node) {
    fuse_attr attr{};
    attr.ino = node;
    attr.nlink = 1;
    attr.blksize = 4096;
    if (node == FUSE_ROOT_ID) {
      attr.mode = S_IFDIR | 0755;
    } else {
      attr.mode = S_IFREG | 0666;
      attr.size = kFileBytes;
      attr.blocks = kFileBytes / 512;
    }
    return attr;
  }

  void Serve() {
    std::vector<uint8_t> buffer(FUSE_MIN_READ_BUFFER + (1u << 20));
    const std::string own_program = ProgramOf("self");
    for (;;) {
      pollfd polled[2] = {{device_, POLLIN, 0}, {stop_, POLLIN, 0}};
      if (poll(polled, 2, -1) < 0 && errno != EINTR) return;
      if (polled[1].revents != 0) return;
      const ssize_t n = read(device_, buffer.data(), buffer.size());
      // EAGAIN: nothing after all; ENOENT: an interrupted request.
      if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == ENOENT)) continue;
      if (n < static_cast<ssize_t>(sizeof(fuse_in_header))) return;  // unmounted or aborted
      fuse_in_header in{};
      std::memcpy(&in, buffer.data(), sizeof in);
      const uint8_t* body = buffer.data() + sizeof in;
      switch (in.opcode) {
        case FUSE_INIT: {
          fuse_init_in init{};
          std::memcpy(&init, body, sizeof init);
          fuse_init_out out{};
          out.major = FUSE_KERNEL_VERSION;
          out.minor = FUSE_KERNEL_MINOR_VERSION;
          out.max_readahead = init.max_readahead;
          out.max_background = 16;
          out.congestion_threshold = 12;
          out.max_write = 1u << 20;
          out.time_gran = 1;
          Reply(in.unique, 0, &out, sizeof out);
          break;
        }
        case FUSE_LOOKUP: {
          if (in.nodeid != FUSE_ROOT_ID ||
              std::strcmp(reinterpret_cast<const char*>(body), "file") != 0) {
            Reply(in.unique, -ENOENT, nullptr, 0);
            break;
          }
          fuse_entry_out out{};
          out.nodeid = kFileNode;
          out.generation = 1;
          out.attr = Attributes(kFileNode);
          Reply(in.unique, 0, &out, sizeof out);
          break;
        }
        case FUSE_GETATTR: {
          fuse_attr_out out{};
          out.attr = Attributes(in.nodeid);
          Reply(in.unique, 0, &out, sizeof out);
          break;
        }
        case FUSE_OPEN: {
          fuse_open_out out{};
          out.fh = 1;
          Reply(in.unique, 0, &out, sizeof out);
          break;
        }
        case FUSE_FLUSH:
        case FUSE_READ:
          // A process that is exiting has no program any more: answered (it may be a child of
          // the test closing what it inherited).
          if (const std::string program = ProgramOf(std::to_string(in.pid));
              !program.empty() && program != own_program) {
            stalled_.fetch_add(1);  // read, never answered
            break;
          }
          if (in.opcode == FUSE_FLUSH) {
            Reply(in.unique, 0, nullptr, 0);
          } else {
            fuse_read_in read_in{};
            std::memcpy(&read_in, body, sizeof read_in);
            const std::vector<uint8_t> zeros(std::min<uint64_t>(read_in.size, kFileBytes));
            Reply(in.unique, 0, zeros.data(), zeros.size());
          }
          break;
        case FUSE_RELEASE:
          Reply(in.unique, 0, nullptr, 0);
          break;
        case FUSE_FORGET:
        case FUSE_BATCH_FORGET:
        case FUSE_INTERRUPT:
          break;  // no answer expected
        default:
          Reply(in.unique, -ENOSYS, nullptr, 0);
          break;
      }
    }
  }

  std::string directory_;
  int device_ = -1;
  int stop_ = -1;            // an eventfd written by the destructor
  uint32_t connection_ = 0;  // the connection's number in fusectl (the mount's device minor)
  std::thread thread_;
  std::atomic<int> stalled_{0};
};

}  // namespace kvault::server
