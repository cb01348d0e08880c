// gpu_ipc_reader: the importing process of gpu_tier_test's CUDA IPC tests. It is exec'd (never
// just forked: a child cannot use its parent's CUDA context), opens the exported pool through a
// GpuIpcImporter, copies each named block to the host and compares it byte for byte with the
// payload its seed generates. The command line and exit codes are in gpu_tier_test_util.h.

#include <cstdio>
#include <span>
#include <string_view>
#include <vector>

#include "gpu_tier_test_util.h"
#include "kvault/kernels/gpu_ipc.h"

namespace kvault::storage::gpu_test {
namespace {

using kernels::GpuIpcExport;
using kernels::GpuIpcImporter;

int Run(int argc, char** argv) {
  if (argc < 7 || (argc - 4) % 3 != 0) {
    std::fprintf(stderr,
                 "usage: gpu_ipc_reader POOL_HANDLE_HEX DEVICE_UUID_HEX POOL_BYTES "
                 "(OFFSET LENGTH SEED)...\n");
    return kReaderSetupError;
  }
  GpuIpcExport base;
  if (!FromHex(argv[1], base.pool_handle) || !FromHex(argv[2], base.device_uuid) ||
      !ParseU64(argv[3], base.pool_bytes)) {
    std::fprintf(stderr, "gpu_ipc_reader: malformed handle, uuid or pool size\n");
    return kReaderSetupError;
  }

  Result<std::unique_ptr<GpuIpcImporter>> importer = GpuIpcImporter::Create();
  if (!importer.ok()) {
    std::fprintf(stderr, "gpu_ipc_reader: %s\n", importer.status().ToString().c_str());
    return kReaderSetupError;
  }

  for (int i = 4; i < argc; i += 3) {
    GpuIpcExport block = base;
    uint64_t length = 0, seed = 0;
    if (!ParseU64(argv[i], block.offset) || !ParseU64(argv[i + 1], length) ||
        !ParseU64(argv[i + 2], seed) || length > UINT32_MAX) {
      std::fprintf(stderr, "gpu_ipc_reader: malformed block arguments at %d\n", i);
      return kReaderSetupError;
    }
    block.length = static_cast<uint32_t>(length);
    std::vector<uint8_t> host(block.length);
    const Status copied = (*importer)->CopyToHost(block, host);
    if (copied.code() == StatusCode::kInvalidArgument) {
      std::fprintf(stderr, "gpu_ipc_reader: rejected: %s\n", copied.ToString().c_str());
      return kReaderRejected;
    }
    if (!copied.ok()) {
      std::fprintf(stderr, "gpu_ipc_reader: %s\n", copied.ToString().c_str());
      return kReaderSetupError;
    }
    if (const std::optional<size_t> at = FirstMismatch(seed, host)) {
      std::fprintf(stderr, "gpu_ipc_reader: block at offset %llu differs at byte %zu\n",
                   static_cast<unsigned long long>(block.offset), *at);
      return kReaderMismatch;
    }
  }
  if ((*importer)->open_pools() != 1) {
    std::fprintf(stderr, "gpu_ipc_reader: %zu pools opened for one handle\n",
                 (*importer)->open_pools());
    return kReaderPoolReopen;
  }
  return kReaderMatch;
}

}  // namespace
}  // namespace kvault::storage::gpu_test

int main(int argc, char** argv) { return kvault::storage::gpu_test::Run(argc, argv); }
