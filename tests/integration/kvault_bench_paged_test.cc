// Runs the real `kvault-bench paged` (a kvaultd of its own, a few small blocks): every stage and
// the pipeline end to end measured for each codec, the loaded cache byte-exact with the reference
// decode, every figure in the JSON; bad input refused with exit code 2 and a clear message.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "binary_run.h"

namespace {

namespace fs = std::filesystem;
using kvault::testing::AllNumbers;
using kvault::testing::BinaryRun;
using kvault::testing::ExpectContainsAll;
using kvault::testing::Slurp;

class KvaultBenchPagedTest : public kvault::testing::BinaryTest {
 protected:
  KvaultBenchPagedTest() : BinaryTest("kvault-bench") {}
};

TEST_F(KvaultBenchPagedTest, MeasuresEveryStageAndThePipelineAndLoadsExactBytes) {
  if (!fs::exists(fs::path(KVAULT_BIN_DIR) / "kvaultd")) GTEST_SKIP() << "kvaultd was not built";
  const fs::path json = dir_ / "paged.json";
  // 2 layers of 64-token blocks: 512 KiB raw per block; 2 MiB of staging in two buffers take one
  // raw block per wave and more quantized ones, so waves differ by codec.
  BinaryRun r =
      Run("paged --codecs fp8,k=int4,v=int2 --layers 2 --block-tokens 64 --blocks 6 "
          "--staging-bytes 2MiB --reps 2 --json " +
          json.string());
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ExpectContainsAll(
      r.out,
      {"6 x 64 tokens", "2 of 32 layers", "0.5 MiB raw per block", "vLLM NHD", "encode",
       "store xfer", "StorePaged", "load xfer", "decode", "LoadPaged", "x slowest", "verified",
       "StorePaged >= 0.7x its slowest stage", "LoadPaged  >= 0.7x its slowest stage"});
  EXPECT_EQ(r.out.find(" NO\n"), std::string::npos) << r.out;

  const std::string doc = Slurp(json);
  ExpectContainsAll(
      doc, {"\"benchmark\": \"kvault-bench paged\"", "\"codec\": \"raw\"", "\"codec\": \"fp8\"",
            "\"codec\": \"k=int4,v=int2\"", "\"memory\": \"host\""});
  // raw is added first (the baseline), then the two codecs asked for. Eight rates per codec:
  // on host memory the two copies of the GPU path (to host, to device) do not exist and are 0.
  for (const char* key : {"tokens_per_s", "gbps"}) {
    const std::vector<double> v = AllNumbers(doc, key);
    ASSERT_EQ(v.size(), 3u * 8) << key << "\n" << doc;
    int zeros = 0;
    for (double x : v) {
      EXPECT_GE(x, 0) << key;
      zeros += x == 0;
    }
    EXPECT_EQ(zeros, 3 * 2) << key << "\n" << doc;
  }
  for (double x : AllNumbers(doc, "pinned_h2d_gbps")) EXPECT_EQ(x, 0) << doc;
  // The ratios are end to end over the slowest stage alone. Rates per codec, in JSON order:
  // encode, to_host, store_transfer, store_paged, load_transfer, to_device, decode, load_paged.
  const std::vector<double> rate = AllNumbers(doc, "tokens_per_s");
  const std::vector<double> store_ratio = AllNumbers(doc, "store_vs_slowest_stage");
  const std::vector<double> load_ratio = AllNumbers(doc, "load_vs_slowest_stage");
  ASSERT_EQ(store_ratio.size(), 3u);
  ASSERT_EQ(load_ratio.size(), 3u);
  for (size_t c = 0; c < 3; ++c) {
    const double* r = rate.data() + c * 8;
    EXPECT_NEAR(store_ratio[c], r[3] / std::min(r[0], r[2]), 1e-4 * store_ratio[c])
        << doc;  // JSON keeps 6 digits
    EXPECT_NEAR(load_ratio[c], r[7] / std::min(r[4], r[6]), 1e-4 * load_ratio[c]) << doc;
  }
  const std::vector<double> bytes = AllNumbers(doc, "object_bytes");
  const std::vector<double> wave = AllNumbers(doc, "wave_blocks");
  ASSERT_EQ(bytes.size(), 3u);
  ASSERT_EQ(wave.size(), 3u);
  EXPECT_GT(bytes[0], 512.0 * 1024);    // raw: the fp16 payload and a header
  EXPECT_LT(bytes[1], bytes[0] * 0.6);  // fp8: about half
  EXPECT_LT(bytes[2], bytes[1]);        // 3 bits per element
  EXPECT_EQ(wave[0], 1);                // 1 MiB per staging buffer
  EXPECT_GT(wave[2], wave[1]);
  EXPECT_EQ(doc.find("\"verified\": false"), std::string::npos) << doc;
}

TEST_F(KvaultBenchPagedTest, RefusesBadInputWithExitCodeTwo) {
  struct Case {
    const char* args;
    const char* message;
  };
  for (const Case& c :
       {Case{"paged --block-tokens 20", "--block-tokens must be a multiple of 16"},
        Case{"paged --codecs int5", "unknown or invalid codec 'int5'"},
        Case{"paged --layers 0", "layers"}, Case{"paged --bogus 1", "bogus"},
        Case{"paged --server nowhere", "--server takes HOST:PORT"},
        Case{"paged --memory gpu", "--memory takes host or cuda"},
        Case{"paged --gpu-tier-server 127.0.0.1:1", "--gpu-tier-server needs --memory cuda"},
        Case{"paged --memory cuda --gpu-tier-server nowhere", "--gpu-tier-server takes HOST:PORT"},
        Case{"paged --kvaultd nan", "--kvaultd nan: not an executable file"},
        Case{"paged --kvaultd /tmp", "--kvaultd /tmp: not an executable file"},
        Case{"paged --transports ,,", "--transports takes UCX_TLS transport names"},
        Case{"paged --transports ''", "--transports takes UCX_TLS transport names"},
        Case{"paged --transports '-1'", "--transports takes UCX_TLS transport names"},
        Case{"paged --transports shm^", "--transports takes UCX_TLS transport names"},
        // 2 GiB raw blocks: kvaultd would be asked for 4 GiB objects, over its limit.
        Case{"paged --layers 128 --block-tokens 4096 --blocks 1", "must stay under 4 GiB"},
        // 1 GiB raw blocks fit kvaultd, but 4096 x 3 of them (12 TiB) fit no machine.
        Case{"paged --layers 64 --block-tokens 4096 --blocks 4096",
             "GiB of memory; this machine has"}}) {
    BinaryRun r = Run(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.out << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args << "\n" << r.err;
  }
  // Positive control: a negated transport list and an executable --kvaultd pass; 1 GiB raw
  // blocks pass the object-size check (the memory check then refuses 4096 of them). With
  // --server no kvaultd is started, so --kvaultd is not looked at.
  for (const char* args :
       {"paged --transports ^tcp,cma --kvaultd /bin/true --layers 64 "
        "--block-tokens 4096 --blocks 4096",
        "paged --server 127.0.0.1:1 --kvaultd nan --layers 64 --block-tokens 4096 "
        "--blocks 4096"}) {
    BinaryRun r = Run(args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.err;
    EXPECT_EQ(r.err.find("not an executable file"), std::string::npos) << args << "\n" << r.err;
    EXPECT_EQ(r.err.find("--transports"), std::string::npos) << args << "\n" << r.err;
    EXPECT_EQ(r.err.find("4 GiB"), std::string::npos) << args << "\n" << r.err;
  }
  // Without a GPU, --memory cuda is refused before any daemon starts (as codec --device cuda).
  if (!fs::exists("/dev/nvidiactl")) {
    BinaryRun cuda =
        Run("paged --memory cuda --codecs raw --layers 2 --block-tokens 64 --blocks 2");
    EXPECT_EQ(cuda.exit_code, 2) << cuda.out << cuda.err;
    EXPECT_NE(cuda.err.find("--memory cuda: no usable CUDA device"), std::string::npos) << cuda.err;
    EXPECT_EQ(cuda.out.find("kvaultd"), std::string::npos) << "a daemon was started: " << cuda.out;
  }
  // A staging buffer smaller than one object is refused while parsing, before a daemon starts.
  BinaryRun r =
      Run("paged --codecs raw --layers 2 --block-tokens 64 --blocks 2 "
          "--staging-bytes 1MiB --depth 8");
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("cannot hold one raw object"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("kvaultd"), std::string::npos) << "a daemon was started: " << r.out;
}

}  // namespace
