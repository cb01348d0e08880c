// Runs the real `kvault` binary: codec roundtrip and inspect, including every documented failure.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "kvault/common/block_format.h"
#include "kvault/common/block_key.h"
#include "kvault/common/file_io.h"
#include "kvault/kernels/kv_generator.h"
#include "kvault/kernels/reference_codec.h"

namespace kvault {
namespace {

namespace fs = std::filesystem;

struct CliRun {
  int exit_code = -1;
  std::string out, err;
};

// Runs `kvault args` in a shell; with `memory_limit_kib`, under that address-space limit.
CliRun RunKvault(const std::string& args, const fs::path& dir, uint64_t memory_limit_kib = 0) {
  const fs::path out = dir / "stdout.txt", err = dir / "stderr.txt";
  const std::string limit =
      memory_limit_kib > 0 ? "ulimit -v " + std::to_string(memory_limit_kib) + " && exec " : "";
  const std::string cmd = limit + std::string(KVAULT_BIN_DIR) + "/kvault " + args + " >" +
                          out.string() + " 2>" + err.string();
  const int rc = std::system(cmd.c_str());
  CliRun r;
  r.exit_code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  auto slurp = [](const fs::path& p) {
    std::ifstream f(p);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

class KvaultCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("kvault_cli_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes a generated tensor [L][2][T][H][D] and returns it.
  kernels::KvTensor WriteInput(const fs::path& path, DType dtype) {
    kernels::KvGeneratorOptions o;
    o.shape = {kLayers, kHeads, kDim, kTokens, dtype};
    auto kv = kernels::GenerateKv(o);
    EXPECT_TRUE(kv.ok()) << kv.status().ToString();
    const auto* bytes = reinterpret_cast<const uint8_t*>(kv->data.data());
    EXPECT_TRUE(WriteFileAtomic(path.string(), {bytes, kv->data.size() * 2}).ok());
    return *kv;
  }

  std::string ShapeArgs(const std::string& extra = "") const {
    return "--layers 2 --kv-heads 3 --head-dim 64 --tokens 37 --block-tokens 16 " + extra;
  }

  static constexpr uint32_t kLayers = 2, kHeads = 3, kDim = 64, kTokens = 37, kBlock = 16;
  fs::path dir_;
};

std::vector<uint16_t> ReadTensor(const fs::path& path) {
  auto bytes = ReadWholeFile(path.string());
  EXPECT_TRUE(bytes.ok());
  std::vector<uint16_t> v(bytes->size() / 2);
  std::memcpy(v.data(), bytes->data(), bytes->size());
  return v;
}

TEST_F(KvaultCliTest, RawRoundtripIsByteIdentical) {
  const auto in = dir_ / "in.bin", out = dir_ / "out.bin";
  WriteInput(in, DType::kF16);
  // The whole file at once, and windows of 1 and 2 of its 3 blocks (the last one partial).
  for (const std::string window : {"", "--window-blocks 1 ", "--window-blocks 2 "}) {
    SCOPED_TRACE(window);
    fs::remove(out);
    CliRun r = RunKvault(
        "codec roundtrip --codec raw " + ShapeArgs(window) + in.string() + " " + out.string(),
        dir_);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(ReadTensor(in), ReadTensor(out));
    const uint64_t input_bytes = 2ull * kLayers * 2 * kTokens * kHeads * kDim;
    EXPECT_NE(r.out.find("\"input_bytes\":" + std::to_string(input_bytes)), std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find("\"blocks\":3"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("\"bits_per_element\":"), std::string::npos);
    EXPECT_NE(r.out.find("\"encoded_bytes\":"), std::string::npos);
    EXPECT_NE(r.out.find("\"nonfinite_inputs\":0,"), std::string::npos) << r.out;
    EXPECT_EQ(r.err, "");
  }
}

// The CLI's output must equal the reference decode of each block, block 0 with the sink tokens
// and the partial last block included.
void ExpectMatchesReference(const kernels::KvTensor& input, const std::vector<uint16_t>& output,
                            const std::string& spec_text, uint32_t sink) {
  const auto& s = input.shape;
  ASSERT_EQ(output.size(), input.data.size());
  for (uint32_t first = 0, b = 0; first < s.tokens; first += 16, ++b) {
    const uint32_t n = std::min<uint32_t>(16, s.tokens - first);
    BlockDescriptor d;
    d.layout = {s.layers, s.kv_heads, s.head_dim, n, s.dtype, b == 0 ? std::min(sink, n) : 0};
    LayerCodec lc;
    // Only single-codec specs are used with this helper.
    if (spec_text == "fp8") lc = {{CodecId::kFp8, false, 0}, {CodecId::kFp8, false, 0}};
    if (spec_text == "int4") lc = {{CodecId::kInt4, false, 64}, {CodecId::kInt4, false, 64}};
    if (spec_text == "int2,rot,sink=4")
      lc = {{CodecId::kInt2, true, 64}, {CodecId::kInt2, true, 64}};
    d.layers.assign(s.layers, lc);
    std::vector<uint16_t> src;
    for (uint32_t l = 0; l < s.layers; ++l) {
      for (uint32_t kv = 0; kv < 2; ++kv) {
        const size_t off = input.Offset(l, kv, first, 0, 0);
        src.insert(src.end(), input.data.begin() + off,
                   input.data.begin() + off + size_t{n} * s.kv_heads * s.head_dim);
      }
    }
    auto object = kernels::ReferenceEncodeBlock(d, src);
    ASSERT_TRUE(object.ok()) << object.status().ToString();
    auto view = ParseBlockObject(*object);
    ASSERT_TRUE(view.ok());
    std::vector<uint16_t> decoded(src.size());
    ASSERT_TRUE(kernels::ReferenceDecodeBlock(*view, decoded).ok());
    size_t i = 0;
    for (uint32_t l = 0; l < s.layers; ++l) {
      for (uint32_t kv = 0; kv < 2; ++kv) {
        const size_t off = input.Offset(l, kv, first, 0, 0);
        for (size_t e = 0; e < size_t{n} * s.kv_heads * s.head_dim; ++e, ++i) {
          ASSERT_EQ(output[off + e], decoded[i]) << "block " << b << " layer " << l << " kv " << kv;
        }
      }
    }
  }
}

TEST_F(KvaultCliTest, LossyRoundtripsEqualTheReferenceDecode) {
  for (const auto& [spec, sink, dtype] :
       {std::tuple{std::string("fp8"), 0u, DType::kF16},
        std::tuple{std::string("int4"), 0u, DType::kBF16},
        std::tuple{std::string("int2,rot,sink=4"), 4u, DType::kF16}}) {
    SCOPED_TRACE(spec);
    const auto in = dir_ / "in.bin", out = dir_ / "out.bin";
    const kernels::KvTensor input = WriteInput(in, dtype);
    const std::string dt = dtype == DType::kF16 ? "f16" : "bf16";
    for (const std::string window : {"", "--window-blocks 2 "}) {
      SCOPED_TRACE(window);
      CliRun r = RunKvault("codec roundtrip --codec '" + spec + "' --dtype " + dt + " " +
                               ShapeArgs(window) + in.string() + " " + out.string(),
                           dir_);
      ASSERT_EQ(r.exit_code, 0) << r.err;
      ExpectMatchesReference(input, ReadTensor(out), spec, sink);
    }
  }
}

TEST_F(KvaultCliTest, RejectsBadInputWithExitCode2AndOneLine) {
  const auto in = dir_ / "in.bin", out = dir_ / "out.bin";
  WriteInput(in, DType::kF16);
  const std::string io = in.string() + " " + out.string();
  struct Case {
    std::string args, needle;
  };
  const Case cases[] = {
      {"codec roundtrip --codec int5 " + ShapeArgs() + io, "unknown codec"},
      {"codec roundtrip --codec 'int4,g=0' " + ShapeArgs() + io, "group size"},
      {"codec roundtrip --codec raw --layers 2 --kv-heads 3 --head-dim 64 --tokens 38 "
       "--block-tokens 16 " +
           io,
       "bytes"},
      {"codec roundtrip --codec raw --layers 2 --kv-heads 3 --head-dim 12 --tokens 37 "
       "--block-tokens 16 " +
           io,
       "head_dim"},
      {"codec roundtrip --codec int4,rot --layers 2 --kv-heads 3 --head-dim 24 --tokens 37 "
       "--block-tokens 16 " +
           io,
       "power-of-two"},
      {"codec roundtrip --codec raw " + ShapeArgs("--dtype f32 ") + io, "--dtype"},
      {"codec roundtrip --codec raw " + ShapeArgs() + (dir_ / "missing.bin").string() + " " +
           out.string(),
       "missing.bin"},
      {"codec roundtrip --codec raw " + ShapeArgs() + in.string(), "positional"},
      {"codec roundtrip --codec raw --bogus 1 " + ShapeArgs() + io, "unknown option"},
      {"codec roundtrip --codec 'k=int4,v=int2;layers=1-5:int8' " + ShapeArgs() + io, "layers"},
      {"codec roundtrip --codec 'int4,sink=17' " + ShapeArgs() + io, "sink=17"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    std::error_code ec;
    fs::remove(out, ec);
    CliRun r = RunKvault(c.args, dir_);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(fs::exists(out)) << "no output may be written on bad input";
  }
  // Positive control: the same shape and file with a valid spec succeeds.
  CliRun ok = RunKvault("codec roundtrip --codec 'k=int4,v=int2' " + ShapeArgs() + io, dir_);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_TRUE(fs::exists(out));
}

// A missing input is bad input (2); an output that cannot be written is an I/O failure (1), also
// when the file system says "No such file or directory" for it. --help says the same.
TEST_F(KvaultCliTest, MissingInputExits2AndUnwritableOutputExits1) {
  const auto in = dir_ / "in.bin", out = dir_ / "out.bin";
  WriteInput(in, DType::kF16);
  CliRun missing = RunKvault("codec roundtrip --codec raw " + ShapeArgs() +
                                 (dir_ / "missing.bin").string() + " " + out.string(),
                             dir_);
  EXPECT_EQ(missing.exit_code, 2) << missing.err;
  const fs::path file = dir_ / "a-file";
  ASSERT_TRUE(WriteFileAtomic(file.string(), std::vector<uint8_t>(1)).ok());
  const std::string unwritable[] = {
      in.string() + " " + (dir_ / "no-such-dir" / "out.bin").string(),  // ENOENT
      in.string() + " " + (file / "out.bin").string(),                  // ENOTDIR
      "--emit-blocks " + (file / "blocks").string() + " " + in.string() + " " + out.string(),
  };
  for (const std::string& io : unwritable) {
    SCOPED_TRACE(io);
    CliRun r = RunKvault("codec roundtrip --codec raw " + ShapeArgs() + io, dir_);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find("cannot"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(fs::exists(out));
  }
  // Positive control for the same input and output directory.
  CliRun ok = RunKvault(
      "codec roundtrip --codec raw " + ShapeArgs() + in.string() + " " + (dir_ / "ok.bin").string(),
      dir_);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  CliRun help = RunKvault("--help", dir_);
  EXPECT_NE(help.out.find("2 bad usage or bad input, including an input file that does not exist"),
            std::string::npos)
      << help.out;
  EXPECT_NE(help.out.find("an output that cannot be written"), std::string::npos) << help.out;
}

// The file streams through a window of blocks: a 128 MiB input (sparse: zeros) round-trips under
// a 112 MiB address-space limit, which its input and output buffers alone (256 MiB) would exceed.
// A window too large for the limit ends with one line and exit code 1, not an abort.
TEST_F(KvaultCliTest, LargeInputStreamsUnderAMemoryLimitAndOutOfMemoryIsOneLine) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "sanitizers reserve more address space than the limit";
#endif
  const auto in = dir_ / "in.bin", out = dir_ / "out.bin";
  constexpr uint64_t kBytes = uint64_t{128} << 20, kLimitKib = 112 << 10;
  { std::ofstream(in.string()).flush(); }
  fs::resize_file(in, kBytes);
  const std::string args =
      "codec roundtrip --codec fp8 --layers 1 --kv-heads 8 --head-dim 128 "
      "--tokens 32768 --block-tokens 16 --threads 1 ";
  CliRun ok = RunKvault(args + in.string() + " " + out.string(), dir_, kLimitKib);
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find("\"window_blocks\":256,"), std::string::npos) << ok.out;  // 16 MiB
  ASSERT_EQ(fs::file_size(out), kBytes);
  std::ifstream f(out, std::ios::binary);
  std::vector<char> chunk(1 << 20);
  uint64_t nonzero = 0;
  while (f.read(chunk.data(), chunk.size()) || f.gcount() > 0) {
    nonzero += std::count_if(chunk.begin(), chunk.begin() + f.gcount(), [](char c) { return c; });
  }
  EXPECT_EQ(nonzero, 0u);  // fp8 of zeros is zeros

  fs::remove(out);
  CliRun oom =
      RunKvault(args + "--window-blocks 4096 " + in.string() + " " + out.string(), dir_, kLimitKib);
  EXPECT_EQ(oom.exit_code, 1) << oom.err;
  EXPECT_NE(oom.err.find("out of memory"), std::string::npos) << oom.err;
  EXPECT_EQ(std::count(oom.err.begin(), oom.err.end(), '\n'), 1) << oom.err;
  EXPECT_FALSE(fs::exists(out));
}

// NaN and Inf inputs propagate (docs/codecs.md 3.5): the JSON counts them and stderr warns once.
TEST_F(KvaultCliTest, NonFiniteInputsAreCountedAndWarned) {
  const auto in = dir_ / "in.bin", out = dir_ / "out.bin";
  kernels::KvTensor kv = WriteInput(in, DType::kF16);
  kv.data[0] = 0x7C00;                   // +Inf
  kv.data[kv.data.size() / 2] = 0xFC00;  // -Inf
  kv.data.back() = 0x7E01;               // NaN
  kv.data[1] = 0x7BFF;                   // 65504, finite
  const auto* bytes = reinterpret_cast<const uint8_t*>(kv.data.data());
  ASSERT_TRUE(WriteFileAtomic(in.string(), {bytes, kv.data.size() * 2}).ok());
  CliRun r = RunKvault("codec roundtrip --codec fp8 " + ShapeArgs("--window-blocks 1 ") +
                           in.string() + " " + out.string(),
                       dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"nonfinite_inputs\":3,"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("warning: 3 input elements are NaN or Inf"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST_F(KvaultCliTest, InspectPrintsHeaderAndCatchesCorruption) {
  const auto in = dir_ / "in.bin", out = dir_ / "out.bin", blocks = dir_ / "blocks";
  WriteInput(in, DType::kF16);
  CliRun r = RunKvault("codec roundtrip --codec 'k=int4,v=int2,sink=2' " +
                           ShapeArgs("--window-blocks 2 --emit-blocks " + blocks.string() + " ") +
                           in.string() + " " + out.string(),
                       dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const fs::path block0 = blocks / "block-00000.kvb";
  ASSERT_TRUE(fs::exists(block0));
  ASSERT_TRUE(fs::exists(blocks / "block-00002.kvb"));
  CliRun ok = RunKvault("codec inspect " + block0.string(), dir_);
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find("2 layers x 3 kv heads x 64 head dim, 16 tokens, f16"), std::string::npos)
      << ok.out;
  EXPECT_NE(ok.out.find("sink tokens:     2"), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("int4:g=64"), std::string::npos);
  EXPECT_NE(ok.out.find("int2:g=64"), std::string::npos);
  EXPECT_NE(ok.out.find("verified"), std::string::npos);
  // The whole namespace digest and key, as in the object.
  auto object = ReadWholeFile(block0.string());
  ASSERT_TRUE(object.ok());
  auto parsed = ParseBlockObject(*object);
  ASSERT_TRUE(parsed.ok());
  EXPECT_NE(ok.out.find("namespace:       " + ToHex(parsed->descriptor.ns_digest) + "\n"),
            std::string::npos)
      << ok.out;
  EXPECT_NE(ok.out.find("key:             " + ToHex(parsed->descriptor.key) + "\n"),
            std::string::npos)
      << ok.out;
  EXPECT_EQ(ToHex(parsed->descriptor.key).size(), 64u);

  auto bytes = ReadWholeFile(block0.string());
  ASSERT_TRUE(bytes.ok());
  (*bytes)[bytes->size() - 100] ^= 0x10;
  const fs::path bad = dir_ / "bad.kvb";
  ASSERT_TRUE(WriteFileAtomic(bad.string(), *bytes).ok());
  CliRun corrupt = RunKvault("codec inspect " + bad.string(), dir_);
  EXPECT_EQ(corrupt.exit_code, 2);
  EXPECT_NE(corrupt.err.find("checksum"), std::string::npos) << corrupt.err;
  CliRun help = RunKvault("codec inspect --help", dir_);
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--no-verify"), std::string::npos);
  CliRun dashdash = RunKvault("codec inspect -- " + block0.string(), dir_);
  EXPECT_EQ(dashdash.exit_code, 0) << dashdash.err;
  CliRun unverified = RunKvault("codec inspect --no-verify " + bad.string(), dir_);
  EXPECT_EQ(unverified.exit_code, 0) << unverified.err;
  EXPECT_NE(unverified.out.find("not verified"), std::string::npos);

  bytes->resize(50);
  ASSERT_TRUE(WriteFileAtomic(bad.string(), *bytes).ok());
  CliRun truncated = RunKvault("codec inspect " + bad.string(), dir_);
  EXPECT_EQ(truncated.exit_code, 2);
  EXPECT_NE(truncated.err.find("truncated"), std::string::npos) << truncated.err;
}

}  // namespace
}  // namespace kvault
