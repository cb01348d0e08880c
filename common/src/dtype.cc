#include "kvault/common/dtype.h"

namespace kvault {

std::string_view DTypeName(DType dtype) { return dtype == DType::kF16 ? "f16" : "bf16"; }

std::optional<DType> ParseDType(std::string_view name) {
  if (name == "f16" || name == "fp16" || name == "half" || name == "float16") return DType::kF16;
  if (name == "bf16" || name == "bfloat16") return DType::kBF16;
  return std::nullopt;
}

}  // namespace kvault
