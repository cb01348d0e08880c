// Command-line parsing and whole-file I/O: the helpers every kvault binary uses for input.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "kvault/common/cli_args.h"
#include "kvault/common/file_io.h"

namespace kvault {
namespace {

namespace fs = std::filesystem;

TEST(CliArgsTest, ParsesValuesFlagsAndPositionals) {
  auto a = CliArgs::Parse({"--codec", "fp8", "--tokens=12", "--no-verify", "in", "out"},
                          {"codec", "tokens"}, {"no-verify"});
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->Get("codec"), "fp8");
  EXPECT_EQ(*a->GetUint("tokens", 0, 1, 100), 12u);
  EXPECT_TRUE(a->Has("no-verify"));
  EXPECT_EQ(a->positional(), (std::vector<std::string>{"in", "out"}));
}

TEST(CliArgsTest, DoubleDashMakesTheRestPositional) {
  auto a = CliArgs::Parse({"--codec", "fp8", "--", "--weird-name", "x"}, {"codec"}, {});
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->positional(), (std::vector<std::string>{"--weird-name", "x"}));
}

TEST(CliArgsTest, RejectsUnknownRepeatedAndMissing) {
  EXPECT_EQ(CliArgs::Parse({"--bogus"}, {"codec"}, {}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(CliArgs::Parse({"--codec", "a", "--codec", "b"}, {"codec"}, {}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(CliArgs::Parse({"--codec"}, {"codec"}, {}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(CliArgs::Parse({"--flag=1"}, {}, {"flag"}).status().code(),
            StatusCode::kInvalidArgument);
  auto a = CliArgs::Parse({"--tokens", "12x"}, {"tokens"}, {});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->GetUint("tokens", 0, 1, 100).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseUintArg("--n", "101", 1, 100).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(*ParseUintArg("--n", "100", 1, 100), 100u);  // positive control at the bound
}

class FileIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("kvault_file_io_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(FileIoTest, WriteAtomicReplacesAndLeavesNoTemporary) {
  const std::string path = (dir_ / "f.bin").string();
  const std::vector<uint8_t> a(1000, 7), b(10, 9);
  ASSERT_TRUE(WriteFileAtomic(path, a).ok());
  ASSERT_TRUE(WriteFileAtomic(path, b).ok());
  auto read = ReadWholeFile(path);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, b);
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir_)) files += e.is_regular_file();
  EXPECT_EQ(files, 1u);
}

// The one UCX_TLS syntax check kvaultd's ucx.transports and kvault-bench's --transports share.
TEST(UcxTransportListTest, TakesNamesAndOneLeadingCaretOnly) {
  for (const char* ok : {"tcp", "posix,cma", "rc_mlx5,sm", "^tcp", "^tcp,cma", "all"}) {
    EXPECT_TRUE(IsUcxTransportList(ok, false)) << ok;
  }
  for (const char* bad : {"shm,^tcp", "^^tcp", "^", ",", "tcp,", ",tcp", "tcp,,cma", "TCP",
                          "tcp:aux", "shm tcp", "-1"}) {
    EXPECT_FALSE(IsUcxTransportList(bad, true)) << bad;
  }
  EXPECT_TRUE(IsUcxTransportList("", true));  // UCX's default, where the caller allows it
  EXPECT_FALSE(IsUcxTransportList("", false));
}

TEST_F(FileIoTest, ErrorsAreClassified) {
  EXPECT_EQ(ReadWholeFile((dir_ / "missing").string()).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(WriteFileAtomic((dir_ / "no" / "such" / "dir").string(), {}).code(),
            StatusCode::kNotFound);
  const std::string path = (dir_ / "big.bin").string();
  ASSERT_TRUE(WriteFileAtomic(path, std::vector<uint8_t>(100, 1)).ok());
  EXPECT_EQ(ReadWholeFile(path, 99).status().code(), StatusCode::kOutOfRange);
  EXPECT_TRUE(ReadWholeFile(path, 100).ok());  // positive control at the limit
  std::vector<uint8_t> more(101);
  EXPECT_EQ(ReadFileExact(path, more).code(), StatusCode::kCorruption);
  EXPECT_EQ(FileSize(dir_.string()).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvault
