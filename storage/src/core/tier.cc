#include "kvault/storage/tier.h"

namespace kvault::storage {

std::string_view TierName(TierKind kind) {
  switch (kind) {
    case TierKind::kGpu:
      return "gpu";
    case TierKind::kHost:
      return "host";
    case TierKind::kNvme:
      return "nvme";
  }
  return "unknown";
}

}  // namespace kvault::storage
