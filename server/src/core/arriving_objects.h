#pragma once
// ArrivingObjects: the stored objects of one Store wave as they arrive in chunks (one GET each),
// and the checksum stream of each object, fed in chunk order so that Commit only compares
// checksums instead of reading the object again (docs/daemon.md, "The data plane").
//
// A chunk arrives one of two ways. UCX lands it (Landed: hashed while it is still in cache), or,
// where the client's memory is mapped into the daemon (shared memory: TransferBatch::copy_mapped),
// this thread copies it (CopyMapped: hashed on the way, with a CopyHelper copying the second half
// of a large chunk meanwhile; bytes the client does not use again are read from its segment's
// file instead, so that they are not mapped here: transport::MappedResidency). A chunk that arrives
// out of order is not hashed; its object's stream then stays short (complete() is false) and Commit
// reads the object again.
//
// Thread-safety: thread-compatible (one io thread serves a request).

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/copy_helper.h"
#include "kvault/common/block_format.h"
#include "kvault/common/status.h"
#include "kvault/transport/ucx/transfer.h"

namespace kvault::server {

class ArrivingObjects {
 public:
  // `objects`: how many objects the wave holds.
  explicit ArrivingObjects(size_t objects) : hashes_(objects) {}

  // Appends a chunk: bytes [offset, offset + bytes.size()) of object `owner`, to be written at
  // `bytes` (the object's reservation). Chunks are numbered in the order they are added.
  void Add(size_t owner, uint64_t offset, std::span<uint8_t> bytes);
  size_t owner(size_t chunk) const { return chunks_[chunk].owner; }

  // Chunk `chunk` has landed: hashes it if it is the next of its object.
  void Landed(size_t chunk);
  // Copies the client's bytes of chunk `chunk` (mapped here, `from.bytes`, of its size; or, when
  // `from` names a file, read from that file instead) into the chunk, hashing what is written if
  // it is the next of its object. `helper`, when idle, copies the second half of a chunk of at
  // least kHelpedBytes meanwhile. Unavailable when the file read fails or comes up short (the
  // client cut its memory short); a copy from the mapping always succeeds.
  Status CopyMapped(size_t chunk, const transport::MappedRemote& from, CopyHelper& helper);

  // Reads of a client's file that came up short (the client cut its memory short), in this
  // process so far: counted with the faults the cut raised through mappings
  // (kvault_client_memory_faults_total).
  static uint64_t cut_reads_total();

  // True when every byte of object `owner` (of `length` bytes) was hashed, in order.
  bool complete(size_t owner, uint64_t length) const { return hashes_[owner].bytes() == length; }
  uint64_t digest(size_t owner) const { return hashes_[owner].Digest(); }

  // Smaller chunks are copied by the calling thread alone: handing over costs more than it saves
  // (measured on the CI host: 64 KiB stores ran about 15% faster alone, 128 KiB as fast, 256 KiB
  // about 6% slower).
  static constexpr size_t kHelpedBytes = 256 << 10;
  // The percentage of a chunk read from a file that this thread reads itself while the helper
  // reads the rest: it also hashes all of it (measured on the CI host in a scratch program, 1 MiB
  // reads of a memfd hashed with XXH3: 40% ran 5.7-6.7 GB/s, 50% 5.0-6.1).
  static constexpr uint64_t kReadShareHashing = 40;

 private:
  struct Chunk {
    size_t owner;
    uint64_t offset;  // in its object
    std::span<uint8_t> bytes;
  };
  // CopyMapped from a file: pread piece by piece, the tail read by `helper`, each piece hashed
  // once it is read.
  Status ReadFile(size_t chunk, const transport::MappedRemote& from, CopyHelper& helper);
  // The stream of the chunk's object when the chunk is the next to hash, else null.
  BlockChecksumStream* NextStream(const Chunk& c);

  std::vector<Chunk> chunks_;
  std::vector<BlockChecksumStream> hashes_;
};

}  // namespace kvault::server
