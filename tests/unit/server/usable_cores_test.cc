// UsableCores and the busy-polling rule: a cgroup CPU quota caps the cores counted, "no quota"
// and unreadable lines leave them alone, and io threads poll only while every connection's
// client and io thread have a core each.
#include "control/usable_cores.h"

#include <gtest/gtest.h>
#include <sched.h>

#include "control/control_server.h"

namespace kvault::server {
namespace {

TEST(UsableCores, ACpuMaxQuotaIsRoundedUpToWholeCores) {
  EXPECT_EQ(CoresOfCpuMax("200000 100000"), 2u);
  EXPECT_EQ(CoresOfCpuMax("150000 100000\n"), 2u);  // 1.5 CPUs can keep two threads busy
  EXPECT_EQ(CoresOfCpuMax("50000 100000"), 1u);
  EXPECT_EQ(CoresOfCpuMax("0 100000"), 1u);  // never below one
  EXPECT_EQ(CoresOfCpuMax("6400000 100000"), 64u);
}

TEST(UsableCores, NoQuotaOrAnUnreadableLineSetsNoCap) {
  EXPECT_EQ(CoresOfCpuMax("max 100000"), std::nullopt);
  EXPECT_EQ(CoresOfCpuMax("-1 100000"), std::nullopt);  // cgroup v1's "no quota"
  EXPECT_EQ(CoresOfCpuMax(""), std::nullopt);
  EXPECT_EQ(CoresOfCpuMax("100000"), std::nullopt);
  EXPECT_EQ(CoresOfCpuMax("100000 0"), std::nullopt);
  EXPECT_EQ(CoresOfCpuMax("1e5 100000"), std::nullopt);
}

TEST(UsableCores, NeverMoreThanTheAffinityAllowsAndAtLeastOne) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  const uint32_t cores = UsableCores();
  EXPECT_GE(cores, 1u);
  EXPECT_LE(cores, static_cast<uint32_t>(CPU_COUNT(&set)));
}

TEST(BusyPollPays, OnlyWhileEachConnectionAndItsIoThreadHaveACore) {
  EXPECT_TRUE(BusyPollPays(1, 2));
  EXPECT_FALSE(BusyPollPays(2, 2));
  EXPECT_FALSE(BusyPollPays(1, 1));  // one core: polling always takes it from the client
  EXPECT_TRUE(BusyPollPays(32, 64));
  EXPECT_FALSE(BusyPollPays(33, 64));
  EXPECT_TRUE(BusyPollPays(0, 1));  // nothing to poll for, but nothing to take either
}

}  // namespace
}  // namespace kvault::server
