#pragma once
// Hardware CRC32C for RocksDB. Debian's librocksdb is built portable, without SSE4.2, so every
// CRC32C it computes (each blob record on write and flush, table files, the MANIFEST) runs in
// software at about 1 GB/s, which the storage benchmark found to be the nvme tier's largest CPU
// cost. librocksdb calls its `rocksdb::crc32c::Extend` through the PLT, so a definition in the
// executable takes precedence; crc32c_override.cc provides one that uses the CPU's CRC32
// instruction when the CPU has it and RocksDB's own function otherwise, and checks itself against
// RocksDB's function before it is used (docs/storage_nvme.md, "CRC32C").

#include <cstdint>
#include <string>

namespace kvault::storage::nvme {

// Verifies the override against the library's own CRC32C on fixed and random inputs and enables
// it; idempotent and thread-safe. Returns a one-line description for the tier's log ("hardware",
// or why RocksDB's software CRC32C stays in use).
std::string EnableHardwareCrc32c();

// True once EnableHardwareCrc32c() has enabled the hardware path and RocksDB calls reach it.
bool HardwareCrc32cActive();

}  // namespace kvault::storage::nvme
