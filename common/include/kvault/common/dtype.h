#pragma once
// Element type of a KV tensor as it lives in an engine's cache (and of raw/sink sections).

#include <cstdint>
#include <optional>
#include <string_view>

namespace kvault {

enum class DType : uint8_t { kF16 = 1, kBF16 = 2 };

// "f16" or "bf16".
std::string_view DTypeName(DType dtype);
// Parses "f16"/"fp16"/"half" and "bf16"; nullopt for anything else.
std::optional<DType> ParseDType(std::string_view name);

}  // namespace kvault
