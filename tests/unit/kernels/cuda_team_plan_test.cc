// How the CUDA codec kernels split a head vector across lanes (kernels/src/cuda/team_plan.h):
// host arithmetic that decides grid sizes and shared memory, checked here on the CPU for every
// head dim the codecs accept, with the choices measured on an H200 pinned at head dim 128.

#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "cuda/team_plan.h"

namespace kvault::kernels::cuda_detail {
namespace {

TEST(CudaTeamPlanTest, EverySplitCoversTheVectorWithinTheKernelsLimits) {
  for (uint32_t dim = 8; dim <= 1024; dim += 8) {
    const uint32_t chunks = dim / 8;
    for (int preferred : {1, 2, 4}) {
      std::optional<uint32_t> forced_values[] = {std::nullopt, 1u, 2u, 4u, 8u, 16u, 32u};
      for (const std::optional<uint32_t>& forced : forced_values) {
        SCOPED_TRACE("dim " + std::to_string(dim) + " preferred " + std::to_string(preferred) +
                     " forced " + (forced ? std::to_string(*forced) : std::string("none")));
        const Team t = TeamFor(chunks, preferred, forced);
        const uint32_t lanes = 1u << t.log2_team;
        EXPECT_LE(lanes, 32u);
        EXPECT_TRUE(t.chunks_per_lane == 1 || t.chunks_per_lane == 2 || t.chunks_per_lane == 4);
        // Every chunk has a lane, and no lane is left with nothing but padding rows.
        EXPECT_GE(uint64_t{lanes} * t.chunks_per_lane, chunks);
        EXPECT_LT(uint64_t{lanes} * (t.chunks_per_lane == 1 ? 0 : t.chunks_per_lane / 2), chunks);
        // Power-of-two head dims (the only ones rotation takes) split exactly.
        if ((dim & (dim - 1)) == 0) {
          EXPECT_EQ(uint64_t{lanes} * t.chunks_per_lane, chunks);
        }
      }
    }
  }
}

TEST(CudaTeamPlanTest, HeadDim128UsesTheSplitsMeasuredFastest) {
  const uint32_t chunks = 128 / 8;
  struct Row {
    CodecId codec;
    bool encode, key_kernel;
    uint32_t lanes;
    int k;
  };
  const Row rows[] = {
      {CodecId::kFp8, true, false, 4, 4},   {CodecId::kFp8, false, false, 4, 4},
      {CodecId::kInt8, true, false, 4, 4},  {CodecId::kInt8, false, false, 4, 4},
      {CodecId::kRaw, true, false, 16, 1},  {CodecId::kRaw, false, false, 16, 1},
      {CodecId::kInt4, true, false, 16, 1}, {CodecId::kInt4, false, false, 8, 2},
      {CodecId::kInt2, true, false, 16, 1}, {CodecId::kInt2, false, false, 8, 2},
      {CodecId::kInt4, true, true, 16, 1},  {CodecId::kInt4, false, true, 8, 2},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(std::string(CodecName(r.codec)) + (r.encode ? " encode" : " decode") +
                 (r.key_kernel ? " (key kernel)" : ""));
    const Team t =
        TeamFor(chunks, PreferredChunksPerLane(r.codec, r.encode, r.key_kernel), std::nullopt);
    EXPECT_EQ(1u << t.log2_team, r.lanes);
    EXPECT_EQ(t.chunks_per_lane, r.k);
  }
}

TEST(CudaTeamPlanTest, AForcedSplitIsHonouredOnlyWithinTheLimits) {
  // Head dim 128: 16 chunks, so 4 to 16 lanes.
  EXPECT_EQ(1u << TeamFor(16, 4, 8u).log2_team, 8u);  // the override beats the preference
  EXPECT_EQ(1u << TeamFor(16, 1, 4u).log2_team, 4u);
  EXPECT_EQ(1u << TeamFor(16, 1, 1u).log2_team, 4u);    // K would be 16
  EXPECT_EQ(1u << TeamFor(16, 4, 32u).log2_team, 16u);  // idle lanes
  // Head dim 1024: 128 chunks, only 32 lanes with 4 chunks each.
  const Team wide = TeamFor(128, 1, 8u);
  EXPECT_EQ(1u << wide.log2_team, 32u);
  EXPECT_EQ(wide.chunks_per_lane, 4);
  // Head dim 8: one chunk, one lane.
  EXPECT_EQ(TeamFor(1, 4, 32u).log2_team, 0u);
  EXPECT_EQ(TeamFor(1, 4, std::nullopt).chunks_per_lane, 1);
}

TEST(CudaTeamPlanTest, TheLanesOverrideTakesPowersOfTwoUpTo32AndRefusesTheRest) {
  for (uint32_t lanes : {1u, 2u, 4u, 8u, 16u, 32u}) {
    Result<std::optional<uint32_t>> parsed = ParseForcedLanes(std::to_string(lanes).c_str());
    ASSERT_TRUE(parsed.ok()) << lanes << ": " << parsed.status().ToString();
    EXPECT_EQ(*parsed, std::optional<uint32_t>(lanes));
  }
  // Unset or empty: no override.
  EXPECT_EQ(*ParseForcedLanes(nullptr), std::nullopt);
  EXPECT_EQ(*ParseForcedLanes(""), std::nullopt);
  for (const char* bad : {"0", "3", "12", "64", "-4", "8x", " 8", "abc", "4294967304"}) {
    Result<std::optional<uint32_t>> parsed = ParseForcedLanes(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(parsed.status().message().find(bad), std::string::npos) << parsed.status().message();
  }
}

}  // namespace
}  // namespace kvault::kernels::cuda_detail
