// ArrivingObjects (arriving_objects.h).

#include "core/arriving_objects.h"

#include <cstring>

namespace kvault::server {

void ArrivingObjects::Add(size_t owner, uint64_t offset, std::span<uint8_t> bytes) {
  chunks_.push_back(Chunk{owner, offset, bytes});
}

BlockChecksumStream* ArrivingObjects::NextStream(const Chunk& c) {
  BlockChecksumStream& stream = hashes_[c.owner];
  return stream.bytes() == c.offset ? &stream : nullptr;
}

void ArrivingObjects::Landed(size_t chunk) {
  const Chunk& c = chunks_[chunk];
  if (BlockChecksumStream* stream = NextStream(c)) stream->Update(c.bytes);
}

void ArrivingObjects::CopyMapped(size_t chunk, std::span<const uint8_t> remote,
                                 CopyHelper& helper) {
  const std::span<uint8_t> local = chunks_[chunk].bytes.first(remote.size());
  // One core copies about 6 GB/s from memory not in cache, two about 9 (the CI host): the helper
  // takes the second half while this thread copies and hashes the first, then hashes the second
  // as it lands.
  const size_t half = remote.size() >= kHelpedBytes ? remote.size() / 2 & ~size_t{63} : 0;
  const bool helped = half > 0 && helper.TryStart(remote.subspan(half), local.subspan(half));
  const size_t mine = helped ? half : remote.size();
  BlockChecksumStream* stream = NextStream(chunks_[chunk]);
  if (stream != nullptr) {
    stream->CopyAndUpdate(remote.first(mine), local.first(mine));
  } else {
    std::memcpy(local.data(), remote.data(), mine);
  }
  if (!helped) return;
  if (stream != nullptr) {
    // The helper's half, piece by piece as it lands: only the last piece is hashed after the
    // helper is done.
    const std::span<const uint8_t> theirs = local.subspan(half);
    for (size_t hashed = 0; hashed < theirs.size();) {
      const size_t landed = helper.AwaitLanded(hashed);
      stream->Update(theirs.subspan(hashed, landed - hashed));
      hashed = landed;
    }
  }
  helper.Wait();
}

}  // namespace kvault::server
