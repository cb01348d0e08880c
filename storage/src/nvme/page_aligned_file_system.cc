#include "nvme/page_aligned_file_system.h"

#include <algorithm>
#include <string>
#include <utility>

namespace kvault::storage::nvme {
namespace {

class PageAlignedWritableFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  explicit PageAlignedWritableFile(std::unique_ptr<rocksdb::FSWritableFile> file)
      : FSWritableFileOwnerWrapper(std::move(file)) {}

  size_t GetRequiredBufferAlignment() const override {
    return std::max(target()->GetRequiredBufferAlignment(), kWriteBufferAlignment);
  }
};

class PageAlignedWritesFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  explicit PageAlignedWritesFileSystem(std::shared_ptr<rocksdb::FileSystem> base)
      : FileSystemWrapper(std::move(base)) {}

  static const char* kClassName() { return "KvaultPageAlignedWrites"; }
  const char* Name() const override { return kClassName(); }

  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    return Wrap(target()->NewWritableFile(name, options, result, dbg), result);
  }

  rocksdb::IOStatus ReopenWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override {
    return Wrap(target()->ReopenWritableFile(name, options, result, dbg), result);
  }

  rocksdb::IOStatus ReuseWritableFile(const std::string& name, const std::string& old_name,
                                      const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override {
    return Wrap(target()->ReuseWritableFile(name, old_name, options, result, dbg), result);
  }

 private:
  static rocksdb::IOStatus Wrap(rocksdb::IOStatus opened,
                                std::unique_ptr<rocksdb::FSWritableFile>* result) {
    if (opened.ok() && *result != nullptr) {
      *result = std::make_unique<PageAlignedWritableFile>(std::move(*result));
    }
    return opened;
  }
};

}  // namespace

std::shared_ptr<rocksdb::FileSystem> PageAlignedWrites(std::shared_ptr<rocksdb::FileSystem> base) {
  return std::make_shared<PageAlignedWritesFileSystem>(std::move(base));
}

std::unique_ptr<rocksdb::Env> NewPageAlignedWritesEnv() {
  return rocksdb::NewCompositeEnv(PageAlignedWrites(rocksdb::FileSystem::Default()));
}

}  // namespace kvault::storage::nvme
