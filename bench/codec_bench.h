#pragma once
// `kvault-bench codec`: accuracy, size and speed of every codec on Llama-3-8B-shaped KV from the
// realistic generator (and a plain-Gaussian control), each speed beside an in-run baseline.

#include <string>
#include <vector>

#include "kvault/kernels/accuracy.h"
#include "report.h"

namespace kvault::bench {

// Returns the process exit code (0 ok, 2 bad usage, 1 failure).
int RunCodecBench(const std::vector<std::string>& args);

// The codec configurations the benchmark reports by default, as (label, spec) pairs.
std::vector<std::pair<std::string, std::string>> DefaultCodecCases();

// The accuracy figures the benchmark reports for one dataset, as a JSON object (k_sqnr_db,
// v_sqnr_db, k_cos_min, attn_kl_mean, attn_kl_max, out_rel_err_mean, out_rel_err_max,
// top1_agreement, logit_mae, nonfinite). `kvault-bench compare` reports the same.
Json AccuracyJson(const kernels::AccuracyReport& a);

}  // namespace kvault::bench
