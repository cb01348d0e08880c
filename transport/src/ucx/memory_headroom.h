#pragma once
// How much memory this process can still take without being killed for it: the machine's
// MemAvailable, and, under cgroup memory limits (v2 memory.max, or v1 memory.limit_in_bytes) of
// its cgroup or any above it, what the tightest leaves. (A v1 hierarchy mounted elsewhere than
// /sys/fs/cgroup/memory, or a container without a cgroup namespace, is not read.) UCX fills a
// shared segment as it allocates it, so an allocation beyond this ends with the OOM killer (and a
// segment file left behind in /dev/shm), not with an error: UcxMemory::Allocate checks first.
// Pure functions over /proc and /sys; thread-safe.

#include <cstdint>
#include <optional>
#include <string_view>

namespace kvault::transport {

// The smallest of the headrooms that can be read, in bytes; nullopt when none can.
std::optional<uint64_t> MemoryHeadroomBytes();

// "MemAvailable:" of /proc/meminfo text, in bytes; nullopt when absent.
std::optional<uint64_t> MemAvailableBytes(std::string_view meminfo);

// What a cgroup limit leaves: the limit minus the usage (0 when over; v2 memory.max and
// memory.current, v1 memory.limit_in_bytes and memory.usage_in_bytes); nullopt when the limit is
// "max" (no limit, v2) or either value is not a number.
std::optional<uint64_t> CgroupHeadroomBytes(std::string_view memory_max,
                                            std::string_view memory_current);

}  // namespace kvault::transport
