// FrameReader: reassembly of frames from arbitrary chunks, exact-size reads, and failures.
#include "kvault/transport/frame_reader.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kvault/common/little_endian.h"
#include "kvault/transport/messages.h"
#include "message_samples.h"

namespace kvault::transport {
namespace {

using testing::SampleMessages;

// All sample messages as one stream, and the frames it holds.
struct Stream {
  std::vector<uint8_t> bytes;
  std::vector<Message> messages;
};

Stream SampleStream() {
  Stream s;
  uint64_t id = 1;
  for (const Message& m : SampleMessages()) {
    EXPECT_TRUE(AppendMessageFrame(m, id++, {}, &s.bytes).ok());
    s.messages.push_back(m);
  }
  return s;
}

// Feeds `bytes` in chunks of `chunk` bytes and decodes every frame that comes out.
std::vector<Message> FeedInChunks(const std::vector<uint8_t>& bytes, size_t chunk) {
  FrameReader reader;
  std::vector<Message> out;
  uint64_t expected_id = 1;
  for (size_t at = 0; at < bytes.size(); at += chunk) {
    std::span<const uint8_t> data =
        std::span(bytes).subspan(at, std::min(chunk, bytes.size() - at));
    while (!data.empty()) {
      Result<size_t> used = reader.Feed(data);
      EXPECT_TRUE(used.ok()) << used.status().ToString();
      if (!used.ok()) return out;
      data = data.subspan(*used);
      if (reader.frame_ready()) {
        Frame f = reader.TakeFrame();
        EXPECT_EQ(f.header.request_id, expected_id++);
        EXPECT_EQ(f.body.size(), f.header.body_length);
        Result<Message> m = DecodeMessage(f.header.type, f.body);
        EXPECT_TRUE(m.ok()) << m.status().ToString();
        if (m.ok()) out.push_back(std::move(m).value());
      }
    }
  }
  EXPECT_FALSE(reader.frame_ready());
  EXPECT_EQ(reader.bytes_wanted(), kFrameHeaderBytes);
  return out;
}

TEST(FrameReaderTest, ReassemblesFromAnyChunking) {
  const Stream s = SampleStream();
  for (size_t chunk : {size_t{1}, size_t{2}, size_t{3}, size_t{7}, size_t{23}, size_t{24},
                       size_t{25}, size_t{4096}, s.bytes.size()}) {
    EXPECT_EQ(FeedInChunks(s.bytes, chunk), s.messages) << "chunk " << chunk;
  }
}

TEST(FrameReaderTest, ExactReadsOfBytesWanted) {
  const Stream s = SampleStream();
  FrameReader reader;
  size_t at = 0;
  size_t frames = 0;
  while (at < s.bytes.size()) {
    const size_t want = reader.bytes_wanted();
    ASSERT_GT(want, 0u);
    // What an async server does: read exactly `want` bytes, feed them all.
    Result<size_t> used = reader.Feed(std::span(s.bytes).subspan(at, want));
    ASSERT_TRUE(used.ok());
    ASSERT_EQ(*used, want);
    at += want;
    // A header with an empty body completes the frame at once.
    if (reader.frame_ready()) {
      reader.TakeFrame();
      ++frames;
    }
  }
  EXPECT_EQ(frames, s.messages.size());
}

TEST(FrameReaderTest, ConsumesNothingWhileAFrameWaits) {
  std::vector<uint8_t> bytes;
  ASSERT_TRUE(AppendFrame(Ping{1}, 1, {}, &bytes).ok());
  ASSERT_TRUE(AppendFrame(Ping{2}, 2, {}, &bytes).ok());
  FrameReader reader;
  Result<size_t> used = reader.Feed(bytes);
  ASSERT_TRUE(used.ok());
  EXPECT_EQ(*used, kFrameHeaderBytes + 8);  // stops at the end of the first frame
  ASSERT_TRUE(reader.frame_ready());
  EXPECT_EQ(reader.bytes_wanted(), 0u);
  Result<size_t> again = reader.Feed(std::span(bytes).subspan(*used));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0u);
  EXPECT_EQ(reader.TakeFrame().header.request_id, 1u);
  again = reader.Feed(std::span(bytes).subspan(*used));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, kFrameHeaderBytes + 8);
  EXPECT_EQ(reader.TakeFrame().header.request_id, 2u);
}

TEST(FrameReaderTest, HeaderFailureIsStickyAndNamesTheRequest) {
  for (uint8_t version : {1, 2}) {  // the earlier versions
    std::vector<uint8_t> bytes;
    ASSERT_TRUE(AppendFrame(Ping{1}, 77, {}, &bytes).ok());
    bytes[4] = version;
    FrameReader reader;
    EXPECT_EQ(reader.Feed(bytes).status().code(), StatusCode::kUnsupported) << int{version};
    EXPECT_NE(reader.status().message().find("version " + std::to_string(version)),
              std::string::npos);
    EXPECT_EQ(reader.failed_request_id(), 77u);
  }
  std::vector<uint8_t> bytes;
  ASSERT_TRUE(AppendFrame(Ping{1}, 77, {}, &bytes).ok());
  bytes[4] = 2;  // version 2
  FrameReader reader;
  Result<size_t> used = reader.Feed(std::span(bytes).first(10));
  ASSERT_TRUE(used.ok());
  EXPECT_EQ(*used, 10u);
  Result<size_t> failed = reader.Feed(std::span(bytes).subspan(10));
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), StatusCode::kUnsupported);
  EXPECT_EQ(reader.status().code(), StatusCode::kUnsupported);
  EXPECT_EQ(reader.failed_request_id(), 77u);
  EXPECT_EQ(reader.bytes_wanted(), 0u);
  EXPECT_FALSE(reader.frame_ready());
  // Later bytes, even a valid frame, cannot resynchronise the stream.
  std::vector<uint8_t> good;
  ASSERT_TRUE(AppendFrame(Ping{1}, 78, {}, &good).ok());
  EXPECT_EQ(reader.Feed(good).status().code(), StatusCode::kUnsupported);

  FrameReader garbage;
  std::vector<uint8_t> junk(kFrameHeaderBytes, 0x41);
  EXPECT_EQ(garbage.Feed(junk).status().code(), StatusCode::kCorruption);
  EXPECT_EQ(garbage.failed_request_id(), std::nullopt);
}

TEST(FrameReaderTest, NeverBuffersMoreThanTheAnnouncedBody) {
  ProtocolLimits limits;
  limits.max_body_bytes = 4096;
  FrameReader reader(limits);
  // A header announcing more than the limit is refused before any body byte is accepted.
  std::vector<uint8_t> header(kFrameHeaderBytes);
  EncodeFrameHeader({kProtocolVersion, MessageType::kStore, 0, 5, 4097}, header.data());
  Result<size_t> used = reader.Feed(header);
  ASSERT_FALSE(used.ok());
  EXPECT_EQ(used.status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(reader.failed_request_id(), 5u);

  // At the limit, the body is collected and nothing past it is taken.
  FrameReader ok_reader(limits);
  EncodeFrameHeader({kProtocolVersion, MessageType::kStore, 0, 6, 4096}, header.data());
  std::vector<uint8_t> stream = header;
  stream.resize(kFrameHeaderBytes + 4096 + 100, 0x5A);
  Result<size_t> taken = ok_reader.Feed(stream);
  ASSERT_TRUE(taken.ok());
  EXPECT_EQ(*taken, kFrameHeaderBytes + 4096);
  ASSERT_TRUE(ok_reader.frame_ready());
  EXPECT_EQ(ok_reader.TakeFrame().body.size(), 4096u);
}

TEST(FrameReaderTest, EmptyFeedIsHarmless) {
  FrameReader reader;
  Result<size_t> used = reader.Feed({});
  ASSERT_TRUE(used.ok());
  EXPECT_EQ(*used, 0u);
  EXPECT_EQ(reader.bytes_wanted(), kFrameHeaderBytes);
}

}  // namespace
}  // namespace kvault::transport
