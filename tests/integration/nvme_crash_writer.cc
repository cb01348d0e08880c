// nvme_crash_writer DIR ROUND READY_FD: the process nvme_crash_test kills with SIGKILL.
//
// Opens the nvme tier in DIR with the options the test uses (CrashTestOptions), recovers it,
// writes one byte to READY_FD, then stores the blocks of round ROUND (TestKey(ROUND % 4, ROUND, i)
// for i < kBlocksPerRound, content derived from the key), erasing some and reading some back as
// it goes. Then it waits to be killed. Exits 2 on a usage error, 3 when the tier fails.

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kvault/storage/nvme_tier.h"
#include "nvme_crash_options.h"
#include "nvme_test_util.h"

namespace {

using kvault::Result;
using kvault::Status;
using kvault::storage::NvmeTier;
using kvault::storage::ScopedKey;
using kvault::storage::testing::ObjectFor;
using kvault::storage::testing::TestKey;

int Fail(const std::string& what, const Status& status) {
  std::fprintf(stderr, "nvme_crash_writer: %s: %s\n", what.c_str(), status.ToString().c_str());
  return 3;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: nvme_crash_writer DIR ROUND READY_FD\n");
    return 2;
  }
  const std::string dir = argv[1];
  const uint64_t round = std::strtoull(argv[2], nullptr, 10);
  const int ready_fd = std::atoi(argv[3]);

  Result<std::unique_ptr<NvmeTier>> opened =
      NvmeTier::Open(kvault::storage::testing::CrashTestOptions(dir));
  if (!opened.ok()) return Fail("open", opened.status());
  NvmeTier& tier = **opened;
  Status recovered = tier.Recover([](const ScopedKey&, kvault::storage::TierSlot, uint32_t) {});
  if (!recovered.ok()) return Fail("recover", recovered);
  const char ready = 'r';
  if (::write(ready_fd, &ready, 1) != 1) return 2;
  ::close(ready_fd);

  const auto key = [&](uint64_t i) { return TestKey(round % 4, round, i); };
  std::vector<uint8_t> out;
  for (uint64_t i = 0; i < kvault::storage::testing::kCrashBlocksPerRound; ++i) {
    const std::vector<uint8_t> object = ObjectFor(key(i));
    Result<kvault::storage::TierSlot> put = tier.Put(key(i), object);
    if (!put.ok()) return Fail("put", put.status());
    if (i % 5 == 4) {
      // Erase an earlier block, and read back another.
      const std::vector<uint8_t> erased = ObjectFor(key(i - 2));
      tier.Erase(key(i - 2), 0, static_cast<uint32_t>(erased.size()));
      const std::vector<uint8_t> expected = ObjectFor(key(i - 1));
      out.assign(expected.size(), 0);
      Status read = tier.Read(key(i - 1), 0, static_cast<uint32_t>(expected.size()), out);
      if (!read.ok()) return Fail("read back", read);
      if (out != expected) return Fail("read back", Status::Corruption("bytes differ"));
    }
  }
  for (;;) ::pause();
}
