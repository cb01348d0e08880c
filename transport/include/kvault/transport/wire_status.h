#pragma once
// WireStatus: the one-byte status code of the protocol (docs/protocol.md §5), and its mapping
// to and from kvault::Status. This file and wire_status.cc are the only place where the mapping
// lives. Pure functions: thread-safe.

#include <cstdint>
#include <string_view>

#include "kvault/common/status.h"

namespace kvault::transport {

// Values 0-9 mirror kvault::StatusCode one to one; 32 and up are protocol conditions that have no
// StatusCode of their own. Never renumber; a new value needs a new protocol version, because a
// version-1 decoder refuses unknown values.
enum class WireStatus : uint8_t {
  kOk = 0,
  kInvalidArgument = 1,
  kNotFound = 2,  // per key: a miss (absent, dropped as corrupt, or another tenant's)
  kCorruption = 3,
  kUnsupported = 4,
  kOutOfRange = 5,
  kIoError = 6,
  kResourceExhausted = 7,  // per key: no room in any tier, or the store refused admission
  kUnavailable = 8,        // the server is draining or a tier is offline
  kInternal = 9,
  kUnsupportedVersion = 32,  // the frame's protocol version is not one the server speaks
  kUnauthenticated = 33,     // request before a successful Auth, or a wrong proof
  kLeaseExpired = 34,        // ReleaseLease or GpuExport named a lease that is unknown, expired
                             // or another session's
  kTransferFailed = 35,      // per key: the UCX get or put of that key's bytes failed
};

// True when `raw` is a WireStatus value above.
bool IsKnownWireStatus(uint8_t raw);

// Stable snake_case name ("ok", "not_found", "unauthenticated", ...); "unknown" otherwise.
std::string_view WireStatusName(WireStatus status);

// The wire code of a kvault status code (0-9, one to one).
WireStatus ToWireStatus(StatusCode code);

// The kvault status code a wire code stands for: itself for 0-9; Unsupported for
// kUnsupportedVersion; InvalidArgument for kUnauthenticated; NotFound for kLeaseExpired; IoError
// for kTransferFailed; Internal for an unknown value.
StatusCode ToStatusCode(WireStatus status);

// The Status a receiver reports for a wire code and its optional message: OK for kOk; otherwise
// ToStatusCode(status) with the message "<wire name>: <message>" (the wire name alone when the
// message is empty), so that protocol conditions stay recognisable after the mapping.
Status StatusFromWire(WireStatus status, std::string_view message = {});

}  // namespace kvault::transport
