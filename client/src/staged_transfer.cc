// Staged Store and Load parts (staged_transfer.h).

#include "staged_transfer.h"

#include <algorithm>
#include <cstring>

namespace kvault::client_internal {

std::optional<StagedSources> StageSources(StagingPool& pool,
                                          std::span<const std::span<const uint8_t>> sources,
                                          std::span<const size_t> indices) {
  std::vector<uint64_t> sizes;
  sizes.reserve(indices.size());
  for (size_t i : indices) sizes.push_back(sources[i].size());
  const StagingLayout layout = LayOut(sizes);
  std::optional<StagingPool::Chunk> chunk = pool.Acquire(layout.total);
  if (!chunk) return std::nullopt;
  StagedSources out;
  out.staged.reserve(indices.size());
  for (size_t k = 0; k < indices.size(); ++k) {
    uint8_t* at = chunk->data() + layout.offsets[k];
    std::memcpy(at, sources[indices[k]].data(), sizes[k]);
    out.staged.emplace_back(at, sizes[k]);
  }
  out.chunk = std::make_shared<StagingPool::Chunk>(std::move(*chunk));
  return out;
}

std::optional<StagedLoad> StagedLoad::Make(StagingPool& pool,
                                           std::span<const LoadDestination> destinations,
                                           std::span<const size_t> indices) {
  std::vector<LoadDestination> wanted;
  std::vector<uint64_t> sizes;
  wanted.reserve(indices.size());
  sizes.reserve(indices.size());
  for (size_t i : indices) {
    const LoadDestination& d = destinations[i];
    wanted.push_back(d);
    sizes.push_back(d.length != 0 ? d.length : d.buffer.size());
  }
  const StagingLayout layout = LayOut(sizes);
  std::optional<StagingPool::Chunk> chunk = pool.Acquire(layout.total);
  if (!chunk) return std::nullopt;
  std::vector<LoadDestination> staged;
  staged.reserve(indices.size());
  for (size_t k = 0; k < indices.size(); ++k) {
    staged.push_back(LoadDestination{
        {chunk->data() + layout.offsets[k], sizes[k]}, wanted[k].offset, wanted[k].length});
  }
  return StagedLoad(std::make_shared<StagingPool::Chunk>(std::move(*chunk)), std::move(wanted),
                    std::move(staged));
}

void StagedLoad::CopyOut(std::span<const Status> statuses,
                         std::span<const uint64_t> object_sizes) const {
  for (size_t k = 0; k < staged_.size() && k < statuses.size() && k < object_sizes.size(); ++k) {
    if (!statuses[k].ok()) continue;
    const LoadDestination& s = staged_[k];
    uint64_t written = s.length;
    if (written == 0) written = object_sizes[k] > s.offset ? object_sizes[k] - s.offset : 0;
    written = std::min<uint64_t>({written, s.buffer.size(), wanted_[k].buffer.size()});
    if (written > 0) std::memcpy(wanted_[k].buffer.data(), s.buffer.data(), written);
  }
}

}  // namespace kvault::client_internal
