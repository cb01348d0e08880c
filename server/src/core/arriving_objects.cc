// ArrivingObjects (arriving_objects.h).

#include "core/arriving_objects.h"

#include <cstring>
#include <string>

#include "kvault/common/positional_copy.h"

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

Status ArrivingObjects::CopyMapped(size_t chunk, const transport::MappedRemote& from,
                                   CopyHelper& helper) {
  if (from.file >= 0) return ReadFile(chunk, from, helper);
  const std::span<const uint8_t> remote = from.bytes;
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
  if (!helped) return Status::Ok();
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
  return Status::Ok();
}

Status ArrivingObjects::ReadFile(size_t chunk, const transport::MappedRemote& from,
                                 CopyHelper& helper) {
  const std::span<uint8_t> local = chunks_[chunk].bytes.first(from.bytes.size());
  // The kernel copies page by page: two threads read about 1.9x what one does (a scratch
  // program: 1 MiB reads of a memfd 3.7 -> 7.2 GB/s). Split at a page of the file.
  const size_t half =
      local.size() >= kHelpedBytes
          ? static_cast<size_t>(((from.file_offset + local.size() / 2) & ~uint64_t{4095}) -
                                from.file_offset)
          : 0;
  auto read = [&](size_t at, size_t n) {
    size_t done = 0;
    const int error =
        PositionalCopy(from.file, false, from.file_offset + at, local.data() + at, n, &done);
    if (error == 0) return Status::Ok();
    return Status::Unavailable(error < 0 ? std::string("the client's shared memory was cut short")
                                         : std::string("reading the client's shared memory: ") +
                                               std::strerror(error));
  };
  Status second;
  const bool helped =
      half > 0 && helper.TryStartTask([&] { second = read(half, local.size() - half); });
  const size_t mine = helped ? half : local.size();
  Status status = read(0, mine);
  BlockChecksumStream* stream = NextStream(chunks_[chunk]);
  if (status.ok() && stream != nullptr) stream->Update(local.first(mine));
  if (!helped) return status;
  helper.Wait();
  if (status.ok()) status = second;
  if (status.ok() && stream != nullptr) stream->Update(local.subspan(half));
  return status;
}

}  // namespace kvault::server
