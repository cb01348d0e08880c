// The bytes of the region request of the memory hand-over (docs/memory_handover.md: a sealed
// memfd's base and length): round trips, the document's worked example byte for byte, every
// refusal of its decoder, and that neither of the memory socket's two requests decodes as the
// other.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "kvault/transport/local/memory_handover_wire.h"
#include "memory_handover_samples.h"

namespace kvault::transport {
namespace {

using testing::ExpectRequestRefused;
using testing::kDoc6;
using testing::kLoopback6;
using testing::RequestBytes;
using testing::SampleRequest;
using testing::V4End;
using testing::V6End;

// A 2 MiB + 4 KiB region at 0x7FAB12345000 of the client at 10.0.0.2:51234, talking to the
// server at [2001:db8::7]:7400.
RegionRequest SampleRegion() {
  return {0x00007FAB12345000ull, 0x201000, V4End({10, 0, 0, 2}, 51234), V6End(kDoc6, 7400)};
}

// Where each end starts in a region request.
constexpr size_t kRegionClientEndAt = 24;
constexpr size_t kRegionServerEndAt = 43;
constexpr uint64_t kUserEnd = uint64_t{1} << 63;
// ::ffff:10.0.0.1, an IPv4-mapped address.
constexpr std::array<uint8_t, 16> kMapped6 = {0, 0, 0,    0,    0,  0, 0, 0,
                                              0, 0, 0xFF, 0xFF, 10, 0, 0, 1};

std::vector<uint8_t> RegionBytes(const RegionRequest& request) {
  const auto bytes = EncodeRegionRequest(request);
  return {bytes.begin(), bytes.end()};
}

void ExpectRegionRefused(const std::vector<uint8_t>& bytes, StatusCode code,
                         const std::string& needle) {
  Result<RegionRequest> r = DecodeRegionRequest(bytes);
  ASSERT_FALSE(r.ok()) << needle;
  EXPECT_EQ(r.status().code(), code) << r.status().ToString();
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().ToString();
}

// The memory socket's two requests, told apart by their length; another length is Corruption.
TEST(MemoryHandOverWireTest, MemoryRequestsAreToldApartByTheirLength) {
  const std::vector<uint8_t> region = EncodeMemoryRequest(MemoryRequest(SampleRegion()));
  const std::vector<uint8_t> hand_over = EncodeMemoryRequest(MemoryRequest(SampleRequest()));
  ASSERT_EQ(region.size(), kRegionRequestBytes);
  ASSERT_EQ(hand_over.size(), kHandOverRequestBytes);
  Result<MemoryRequest> decoded = DecodeMemoryRequest(region);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(std::get<RegionRequest>(*decoded), SampleRegion());
  decoded = DecodeMemoryRequest(hand_over);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(std::get<HandOverRequest>(*decoded), SampleRequest());
  for (size_t n : {size_t{0}, kRegionRequestBytes + 1, kHandOverRequestBytes + 1}) {
    std::vector<uint8_t> other = hand_over;
    other.resize(n);
    EXPECT_EQ(DecodeMemoryRequest(other).status().code(), StatusCode::kCorruption) << n;
  }
}

TEST(MemoryHandOverWireTest, RegionRequestRoundTrips) {
  const std::vector<TcpEnd> ends = {V4End({127, 0, 0, 1}, 7400), V4End({10, 0, 0, 2}, 0xFFFF),
                                    V6End(kLoopback6, 1), V6End(kDoc6, 51234)};
  // Every range here ends at or before 2^63; three end exactly there.
  const std::vector<std::pair<uint64_t, uint64_t>> ranges = {
      {1, 1}, {0x7FAB12345000, 4096}, {1, kUserEnd - 1}, {kUserEnd - 1, 1}, {kUserEnd - 4096, 4096},
  };
  for (const auto& [base, length] : ranges) {
    for (size_t i = 0; i < ends.size(); ++i) {
      const RegionRequest request{base, length, ends[i], ends[ends.size() - 1 - i]};
      const std::vector<uint8_t> bytes = RegionBytes(request);
      ASSERT_EQ(bytes.size(), kRegionRequestBytes);
      Result<RegionRequest> back = DecodeRegionRequest(bytes);
      ASSERT_TRUE(back.ok()) << back.status().ToString();
      EXPECT_EQ(*back, request);
    }
  }
  // An IPv4-mapped IPv6 end goes out as family 4 and comes back as the IPv4 end.
  RegionRequest mapped = SampleRegion();
  mapped.server_end = V6End(kMapped6, 7400);
  const std::vector<uint8_t> bytes = RegionBytes(mapped);
  EXPECT_EQ(bytes[kRegionServerEndAt], 4);
  Result<RegionRequest> back = DecodeRegionRequest(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->server_end, V4End({10, 0, 0, 1}, 7400));
}

TEST(MemoryHandOverWireTest, RegionRequestGoldenBytes) {
  const std::vector<uint8_t> request = {
      0x4B, 0x56, 0x4D, 0x52,                          // "KVMR"
      0x01, 0x00,                                      // version 1
      0x00, 0x00,                                      // reserved
      0x00, 0x50, 0x34, 0x12, 0xAB, 0x7F, 0x00, 0x00,  // base 0x7FAB12345000
      0x00, 0x10, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00,  // length 0x201000
      0x04,                                            // client_end: family 4
      0x0A, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00,  //   10.0.0.2, 12 zero bytes
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  //
      0x22, 0xC8,                                      //   port 51234
      0x06,                                            // server_end: family 6
      0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00,  //   2001:db8::7
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07,  //
      0xE8, 0x1C,                                      //   port 7400
  };
  ASSERT_EQ(request.size(), kRegionRequestBytes);
  EXPECT_EQ(RegionBytes(SampleRegion()), request);
  Result<RegionRequest> decoded = DecodeRegionRequest(request);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(*decoded, SampleRegion());
}

// Neither request decodes as the other, nor one a byte longer or shorter.
TEST(MemoryHandOverWireTest, RegionRequestOfAnotherLengthIsCorruption) {
  const std::vector<uint8_t> good = RegionBytes(SampleRegion());
  ASSERT_TRUE(DecodeRegionRequest(good).ok());
  ExpectRegionRefused({good.begin(), good.end() - 1}, StatusCode::kCorruption, "61 bytes, not 62");
  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  ExpectRegionRefused(longer, StatusCode::kCorruption, "63 bytes, not 62");
  const std::vector<uint8_t> hand_over = RequestBytes(SampleRequest());
  ASSERT_TRUE(DecodeHandOverRequest(hand_over).ok());
  ExpectRegionRefused(hand_over, StatusCode::kCorruption, "70 bytes, not 62");
  ExpectRequestRefused(good, StatusCode::kCorruption, "62 bytes, not 70");
}

TEST(MemoryHandOverWireTest, RegionRequestHeaderFields) {
  const std::vector<uint8_t> good = RegionBytes(SampleRegion());
  ASSERT_TRUE(DecodeRegionRequest(good).ok());
  for (size_t at = 0; at < 4; ++at) {
    std::vector<uint8_t> bad = good;
    bad[at] ^= 0x20;
    ExpectRegionRefused(bad, StatusCode::kCorruption, "region request: bad magic");
  }
  std::vector<uint8_t> kvmh = good;  // the hand-over request's magic
  kvmh[3] = 'H';
  ExpectRegionRefused(kvmh, StatusCode::kCorruption, "bad magic");
  for (uint16_t version : {0, 2, 0xFFFF}) {
    std::vector<uint8_t> bad = good;
    bad[4] = static_cast<uint8_t>(version);
    bad[5] = static_cast<uint8_t>(version >> 8);
    ExpectRegionRefused(bad, StatusCode::kUnsupported, "version " + std::to_string(version));
  }
  for (size_t at : {6, 7}) {
    std::vector<uint8_t> bad = good;
    bad[at] = 1;
    ExpectRegionRefused(bad, StatusCode::kCorruption, "reserved");
  }
}

TEST(MemoryHandOverWireTest, RegionRequestRange) {
  const auto with = [](uint64_t base, uint64_t length) {
    RegionRequest request = SampleRegion();
    request.base = base;
    request.length = length;
    return RegionBytes(request);
  };
  const std::vector<std::pair<uint64_t, uint64_t>> bad = {
      {0, 4096},                        // base 0
      {0x7FAB12345000, 0},              // length 0
      {0, 0},                           //
      {kUserEnd, 1},                    // base at 2^63
      {~uint64_t{0}, 1},                // base past it
      {kUserEnd - 1, 2},                // ends one byte past 2^63
      {1, kUserEnd},                    //
      {4096, kUserEnd - 1},             //
      {kUserEnd - 4096, ~uint64_t{0}},  // base + length wraps around
  };
  for (const auto& [base, length] : bad) {
    ExpectRegionRefused(with(base, length), StatusCode::kInvalidArgument,
                        "base " + std::to_string(base) + " and length " + std::to_string(length));
  }
  // Ending exactly at 2^63 is fine.
  EXPECT_TRUE(DecodeRegionRequest(with(kUserEnd - 4096, 4096)).ok());
  EXPECT_TRUE(DecodeRegionRequest(with(4096, kUserEnd - 4096)).ok());
  // The range is checked before the ends (field order).
  std::vector<uint8_t> both = with(0, 4096);
  both[kRegionClientEndAt] = 5;
  ExpectRegionRefused(both, StatusCode::kInvalidArgument, "base 0");
}

TEST(MemoryHandOverWireTest, RegionRequestEnds) {
  RegionRequest four = SampleRegion();
  four.server_end = V4End({127, 0, 0, 1}, 7400);
  RegionRequest six = SampleRegion();
  six.client_end = V6End(kLoopback6, 51234);
  const std::vector<uint8_t> good4 = RegionBytes(four);
  const std::vector<uint8_t> good6 = RegionBytes(six);
  ASSERT_TRUE(DecodeRegionRequest(good4).ok());
  ASSERT_TRUE(DecodeRegionRequest(good6).ok());
  for (const auto& [at, field] :
       {std::pair<size_t, std::string>{kRegionClientEndAt, "region request: client_end"},
        std::pair<size_t, std::string>{kRegionServerEndAt, "region request: server_end"}}) {
    for (const std::vector<uint8_t>& base : {good4, good6}) {
      for (uint8_t family : {0, 5, 0xFF}) {
        std::vector<uint8_t> bad = base;
        bad[at] = family;
        ExpectRegionRefused(bad, StatusCode::kCorruption,
                            field + ": family " + std::to_string(family));
      }
      std::vector<uint8_t> zero_port = base;
      zero_port[at + 17] = 0;
      zero_port[at + 18] = 0;
      ExpectRegionRefused(zero_port, StatusCode::kInvalidArgument, field + ": port is 0");
    }
    // Family 4 with a nonzero byte after its address; family 6 with an IPv4-mapped address.
    std::vector<uint8_t> padded = good4;
    padded[at + 16] = 1;
    ExpectRegionRefused(padded, StatusCode::kCorruption, field + ": family 4 with nonzero");
    std::vector<uint8_t> mapped = good4;
    mapped[at] = 6;
    std::copy(kMapped6.begin(), kMapped6.end(), mapped.begin() + at + 1);
    ExpectRegionRefused(mapped, StatusCode::kCorruption, field + ": family 6 with an IPv4-mapped");
  }
}

}  // namespace
}  // namespace kvault::transport
