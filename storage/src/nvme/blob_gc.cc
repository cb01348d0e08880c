#include "nvme/blob_gc.h"

#include <cstddef>

namespace kvault::storage::nvme {

bool BlobGcPays(std::span<const BlobFileGarbage> oldest_first, double age_cutoff,
                double min_garbage, bool active) {
  if (min_garbage <= 0) return true;
  const auto eligible = static_cast<size_t>(age_cutoff * static_cast<double>(oldest_first.size()));
  uint64_t total = 0, garbage = 0;
  for (size_t i = 0; i < eligible && i < oldest_first.size(); ++i) {
    total += oldest_first[i].total_bytes;
    garbage += oldest_first[i].garbage_bytes;
  }
  if (total == 0) return false;
  const double threshold = active ? min_garbage / 2 : min_garbage;
  return static_cast<double>(garbage) >= threshold * static_cast<double>(total);
}

}  // namespace kvault::storage::nvme
