// The WireStatus codes and their mapping to kvault::Status (docs/protocol.md §5).
#include "kvault/transport/wire_status.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace kvault::transport {
namespace {

TEST(WireStatusTest, NumbersAreFixed) {
  // docs/protocol.md §5: never renumbered.
  EXPECT_EQ(static_cast<int>(WireStatus::kOk), 0);
  EXPECT_EQ(static_cast<int>(WireStatus::kNotFound), 2);
  EXPECT_EQ(static_cast<int>(WireStatus::kInternal), 9);
  EXPECT_EQ(static_cast<int>(WireStatus::kUnsupportedVersion), 32);
  EXPECT_EQ(static_cast<int>(WireStatus::kUnauthenticated), 33);
  EXPECT_EQ(static_cast<int>(WireStatus::kLeaseExpired), 34);
  EXPECT_EQ(static_cast<int>(WireStatus::kTransferFailed), 35);
}

TEST(WireStatusTest, KnownValuesHaveDistinctNames) {
  std::set<std::string> names;
  int known = 0;
  for (int raw = 0; raw < 256; ++raw) {
    const auto s = static_cast<WireStatus>(raw);
    if (!IsKnownWireStatus(static_cast<uint8_t>(raw))) {
      EXPECT_EQ(WireStatusName(s), "unknown") << raw;
      EXPECT_EQ(ToStatusCode(s), StatusCode::kInternal) << raw;
      continue;
    }
    ++known;
    EXPECT_TRUE(names.insert(std::string(WireStatusName(s))).second) << raw;
  }
  EXPECT_EQ(known, 14);
}

TEST(WireStatusTest, StatusCodesRoundTrip) {
  for (int c = 0; c <= static_cast<int>(StatusCode::kInternal); ++c) {
    const auto code = static_cast<StatusCode>(c);
    const WireStatus w = ToWireStatus(code);
    EXPECT_EQ(static_cast<int>(w), c);
    EXPECT_EQ(ToStatusCode(w), code);
    EXPECT_EQ(WireStatusName(w), StatusCodeName(code));
  }
}

TEST(WireStatusTest, ProtocolCodesMapToTheNearestStatusCode) {
  EXPECT_EQ(ToStatusCode(WireStatus::kUnsupportedVersion), StatusCode::kUnsupported);
  EXPECT_EQ(ToStatusCode(WireStatus::kUnauthenticated), StatusCode::kInvalidArgument);
  EXPECT_EQ(ToStatusCode(WireStatus::kLeaseExpired), StatusCode::kNotFound);
  EXPECT_EQ(ToStatusCode(WireStatus::kTransferFailed), StatusCode::kIoError);
}

TEST(WireStatusTest, StatusFromWireKeepsTheWireName) {
  EXPECT_TRUE(StatusFromWire(WireStatus::kOk, "ignored").ok());
  Status s = StatusFromWire(WireStatus::kUnauthenticated, "bad proof");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "unauthenticated: bad proof");
  Status bare = StatusFromWire(WireStatus::kNotFound);
  EXPECT_EQ(bare.code(), StatusCode::kNotFound);
  EXPECT_EQ(bare.message(), "not_found");
  Status unknown = StatusFromWire(static_cast<WireStatus>(200), "x");
  EXPECT_EQ(unknown.code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace kvault::transport
