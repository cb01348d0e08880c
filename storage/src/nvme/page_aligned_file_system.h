#pragma once
// A RocksDB FileSystem whose direct-I/O writes come from page-aligned buffers
// (docs/storage_nvme.md, "The nvme tier against fio").
//
// RocksDB aligns the buffer of an O_DIRECT file to what the file asks for, the device's logical
// sector size (512 bytes on most disks). Its buffers then start 512 bytes into a page, so a 1 MiB
// write spans 257 pages: one more than a virtio disk takes in one request (254 segments), and the
// kernel splits every write. On the development VM such writes ran at 86-91 MB/s against
// 237-263 MB/s from a page-aligned buffer (same disk, same minute). Writable files of this file
// system ask for at least a page; everything else passes through to the base file system.

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <memory>

namespace kvault::storage::nvme {

// The page size the wrapped writable files ask their writers to align to.
inline constexpr size_t kWriteBufferAlignment = 4096;

// `base` with writable files that report max(base alignment, kWriteBufferAlignment) as their
// required buffer alignment. Thread-safe as `base` is.
std::shared_ptr<rocksdb::FileSystem> PageAlignedWrites(std::shared_ptr<rocksdb::FileSystem> base);

// An Env over PageAlignedWrites(the default file system), sharing the default Env's threads.
// The Env must outlive every database opened with it.
std::unique_ptr<rocksdb::Env> NewPageAlignedWritesEnv();

}  // namespace kvault::storage::nvme
