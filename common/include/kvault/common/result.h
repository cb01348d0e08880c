#pragma once
// Result<T>: either a value or a non-OK Status. Construct from a T (success) or a Status (failure;
// constructing from an OK Status is a bug and becomes Status::Internal).

#include <optional>
#include <utility>

#include "kvault/common/status.h"

namespace kvault {

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT(google-explicit-constructor)
  Result(Status status)  // NOLINT(google-explicit-constructor)
      : status_(status.ok() ? Status::Internal("Result constructed from an OK status")
                            : std::move(status)) {}

  bool ok() const noexcept { return value_.has_value(); }
  // OK when a value is held.
  const Status& status() const noexcept { return status_; }

  // Precondition: ok().
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }
  T&& operator*() && { return std::move(*value_); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace kvault

#define KVAULT_CONCAT_INNER_(a, b) a##b
#define KVAULT_CONCAT_(a, b) KVAULT_CONCAT_INNER_(a, b)
// `KVAULT_ASSIGN_OR_RETURN(auto x, MakeX());` declares x from a Result or returns its Status.
#define KVAULT_ASSIGN_OR_RETURN(lhs, expr)                    \
  auto KVAULT_CONCAT_(kvault_result_, __LINE__) = (expr);     \
  if (!KVAULT_CONCAT_(kvault_result_, __LINE__).ok())         \
    return KVAULT_CONCAT_(kvault_result_, __LINE__).status(); \
  lhs = std::move(KVAULT_CONCAT_(kvault_result_, __LINE__)).value()
