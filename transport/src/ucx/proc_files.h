#pragma once
// What /proc says about another process (a client that names its own memory in a remote key):
// small /proc files read whole, fields of its status and fdinfo, its uids, its sysv attachments.
// Pure functions over /proc; thread-safe.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvault::transport {

// The text of a small /proc file, or nullopt (errno set) when it cannot be read.
std::optional<std::string> ReadProcFile(const std::string& path);

// Where a /proc link points ("/proc/self/fd/3" -> "/proc/42/mem", "socket:[123]",
// "net:[4026531840]"), or nullopt (errno set) when it cannot be read; a target of 4096 bytes or
// more is nullopt too (errno ENAMETOOLONG), never cut.
std::optional<std::string> ReadProcLink(const std::string& path);

// The numbers after "<name>:" at the start of a line of `text` (fdinfo, status), in `base`; empty
// when there is no such line.
std::vector<uint64_t> ProcField(std::string_view text, std::string_view name, int base);

// The real, effective, saved and file-system uids of process `pid` (/proc/<pid>/status "Uid:"):
// the uids it can act as. nullopt when the process cannot be read (gone).
std::optional<std::array<uint64_t, 4>> ProcessUids(uint64_t pid);

// The file-system type ("proc", "ext4", ...) of mount `mount_id` of this process's mount
// namespace (/proc/self/mountinfo; the mnt_id of an fdinfo), or nullopt when it is not one of
// them. Reads no file system but procfs.
std::optional<std::string> MountType(uint64_t mount_id);

// True when `uid` is one of `uids`.
bool IsOneOf(uint64_t uid, const std::array<uint64_t, 4>& uids);

// Whether process `pid` has sysv segment `shmid` attached: its /proc/<pid>/maps shows a shared
// mapping named "/SYSV<key>" whose inode is the shmid. nullopt when the map cannot be read.
std::optional<bool> HasSysvAttached(uint64_t pid, uint32_t shmid);

}  // namespace kvault::transport
