// The Mooncake trace reader: fields, skipped keys, blank lines, stable time order, and a clear
// error naming the line and column for every kind of malformed input; the dense block form.
#include <gtest/gtest.h>

#include <string>

#include "trace/mooncake_trace.h"

namespace kvault::bench {
namespace {

TEST(TraceReaderTest, ParsesFieldsAndSortsStablyByTimestamp) {
  const std::string text =
      "{\"timestamp\": 20, \"input_length\": 1000, \"output_length\": 7, \"hash_ids\": [0, 1]}\n"
      "\n"
      "  {\"hash_ids\":[0,2,3],\"timestamp\":5,\"extra\":{\"a\":[1,\"x\\\"y\",null,true]}}\r\n"
      "{\"timestamp\": 20, \"hash_ids\": []}\n"
      "{\"timestamp\": 1.5e1, \"hash_ids\": [18446744073709551615]}";
  Result<std::vector<TraceRequest>> r = ParseMooncakeTrace(text);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ((*r)[0].timestamp_ms, 5);
  EXPECT_EQ((*r)[0].hash_ids, (std::vector<uint64_t>{0, 2, 3}));
  EXPECT_EQ((*r)[0].input_length, 0u);  // absent
  EXPECT_EQ((*r)[1].timestamp_ms, 15);
  EXPECT_EQ((*r)[1].hash_ids, (std::vector<uint64_t>{UINT64_MAX}));
  EXPECT_EQ((*r)[2].timestamp_ms, 20);  // equal timestamps keep file order
  EXPECT_EQ((*r)[2].input_length, 1000u);
  EXPECT_EQ((*r)[2].output_length, 7u);
  EXPECT_TRUE((*r)[3].hash_ids.empty());
}

TEST(TraceReaderTest, EmptyInputIsAnEmptyTrace) {
  Result<std::vector<TraceRequest>> r = ParseMooncakeTrace("\n  \n");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
}

// Parses `bad` as line 3 of a trace and returns the error message.
std::string ErrorOnLine3(const std::string& bad) {
  const std::string text = "{\"timestamp\": 0, \"hash_ids\": [0]}\n\n" + bad + "\n" +
                           "{\"timestamp\": 9, \"hash_ids\": [1]}\n";
  Result<std::vector<TraceRequest>> r = ParseMooncakeTrace(text, "t.jsonl");
  EXPECT_FALSE(r.ok()) << "accepted: " << bad;
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  return r.status().message();
}

TEST(TraceReaderTest, MalformedLinesNameLineAndColumn) {
  struct Case {
    std::string line;
    std::string expect;  // part of the message after "t.jsonl:3:"
  };
  const Case cases[] = {
      {"{\"timestamp\": 1, \"hash_ids\": [1, 2}", "expected ',' or ']'"},
      {"{\"timestamp\": 1, \"hash_ids\": [1]", "expected ',' or '}'"},
      {"{\"timestamp\": 1, \"hash_ids\": [1]} x", "unexpected text"},
      {"[1, 2]", "expected '{'"},
      {"{\"timestamp\": 1}", "missing \"hash_ids\""},
      {"{\"hash_ids\": [1]}", "missing \"timestamp\""},
      {"{\"timestamp\": 1, \"hash_ids\": [-1]}", "non-negative integer"},
      {"{\"timestamp\": 1, \"hash_ids\": [1.5]}", "non-negative integer"},
      {"{\"timestamp\": 1, \"hash_ids\": [18446744073709551616]}", "larger than 2^64-1"},
      {"{\"timestamp\": 1, \"timestamp\": 2, \"hash_ids\": []}", "duplicate key"},
      {"{\"timestamp\": -3, \"hash_ids\": []}", "finite non-negative"},
      {"{\"timestamp\": \"5\", \"hash_ids\": []}", "expected a number"},
      {"{\"timestamp\": 1, \"hash_ids\": 7}", "must be an array"},
      {"{\"timestamp\": 1, \"input_length\": 2.0, \"hash_ids\": []}", "non-negative integer"},
      {"{\"timestamp\": 1, \"hash_ids\": [], \"x\": \"abc}", "unterminated string"},
      {"{\"timestamp\": 1, \"hash_ids\": [], \"x\": tru}", "unexpected character"},
      {"{\"timestamp\": 1, \"hash_ids\": [], \"x\": \"\\q\"}", "bad escape"},
      {"{timestamp: 1}", "expected a string"},
      {"{\"timestamp\" 1, \"hash_ids\": []}", "expected ':'"},
      {"{\"timestamp\": 01, \"hash_ids\": []}", "expected ',' or '}'"},
  };
  for (const Case& c : cases) {
    const std::string msg = ErrorOnLine3(c.line);
    EXPECT_EQ(msg.rfind("t.jsonl:3:", 0), 0u) << msg;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.line << " -> " << msg;
  }
}

TEST(TraceReaderTest, ColumnPointsAtTheFault) {
  Result<std::vector<TraceRequest>> r =
      ParseMooncakeTrace("{\"timestamp\": 1, \"hash_ids\": [1, x]}");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message().rfind("trace:1:34:", 0), 0u) << r.status().message();
}

TEST(TraceReaderTest, MissingFileIsNotFound) {
  Result<std::vector<TraceRequest>> r = ReadMooncakeTrace("/nonexistent/kvault/trace.jsonl");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
}

TEST(BlockTraceTest, DenseIdsParentsAndCapacity) {
  std::vector<TraceRequest> requests(3);
  requests[0].hash_ids = {70, 71, 72};
  requests[1].hash_ids = {70, 73};
  requests[2].hash_ids = {70, 71};
  const BlockTrace t = MakeBlockTrace(requests);
  EXPECT_EQ(t.unique_blocks, 4u);
  EXPECT_EQ(t.num_requests(), 3u);
  EXPECT_EQ(t.blocks, (std::vector<uint32_t>{0, 1, 2, 0, 3, 0, 1}));
  EXPECT_EQ(t.request(1).size(), 2u);
  EXPECT_EQ(t.hash_ids, (std::vector<uint64_t>{70, 71, 72, 73}));
  EXPECT_EQ(t.parent, (std::vector<uint32_t>{BlockTrace::kRoot, 0, 1, 0}));
  EXPECT_TRUE(t.prefix_consistent);
  EXPECT_EQ(CapacityForFraction(t, 0.5), 2u);
  EXPECT_EQ(CapacityForFraction(t, 0.74), 2u);  // floor
  EXPECT_EQ(CapacityForFraction(t, 0), 0u);

  requests[2].hash_ids = {71};  // 71 now also starts a request: not a prefix tree
  EXPECT_FALSE(MakeBlockTrace(requests).prefix_consistent);
}

}  // namespace
}  // namespace kvault::bench
