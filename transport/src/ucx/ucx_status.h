#pragma once
// The one place where UCX status codes become kvault Status (STYLE.md: one conversion file per
// foreign error space). Private to kvault_ucx: it names ucs_status_t.

#include <ucs/type/status.h>

#include <string_view>

#include "kvault/common/status.h"

namespace kvault::transport {

// Maps `status` to a kvault Status whose message is "<what>: <UCX status string>". UCS_OK gives
// OK. Peer and link failures (unreachable, reset, timed out, canceled, shared-memory attach
// failures, endpoint failures) become kUnavailable, so callers can treat them as "this peer is
// gone, these keys miss".
Status UcsToStatus(ucs_status_t status, std::string_view what);

// The status of a transfer whose deadline passed: kUnavailable with a message that starts with
// kDeadlineExceededPrefix (see transfer.h; common has no dedicated code yet).
Status DeadlineExceededStatus(std::string_view what);

}  // namespace kvault::transport
