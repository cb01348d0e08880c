#pragma once
// UsableCores: how many cores this process can keep busy at once, for decisions such as whether
// an io thread may busy-poll (ControlServer). Its CPU affinity, capped by the CPU quota of its
// cgroup and of every ancestor (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us` over
// `cpu.cfs_period_us`, rounded up), at least 1. A container given two CPUs' worth of quota on a
// 64-core host counts 2. Thread-safe (reads /proc and /sys).

#include <cstdint>
#include <optional>
#include <string_view>

namespace kvault::server {

uint32_t UsableCores();

// The cores a cgroup v2 `cpu.max` line allows: "QUOTA PERIOD" gives QUOTA / PERIOD rounded up
// (at least 1); "max ..." (no quota) or anything that does not parse gives nullopt.
std::optional<uint32_t> CoresOfCpuMax(std::string_view line);

}  // namespace kvault::server
