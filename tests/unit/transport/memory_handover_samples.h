#pragma once
// Sample hand-over requests and the helpers that build and refuse them, shared by the memory
// hand-over wire tests (memory_handover_wire_test.cc, memory_handover_region_wire_test.cc).

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "kvault/transport/local/memory_handover_wire.h"

namespace kvault::transport::testing {

inline TcpEnd V4End(std::array<uint8_t, 4> address, uint16_t port) {
  TcpEnd end;
  std::copy(address.begin(), address.end(), end.address.begin());
  end.port = port;
  return end;
}

inline TcpEnd V6End(const std::array<uint8_t, 16>& address, uint16_t port) {
  TcpEnd end;
  end.ipv6 = true;
  end.address = address;
  end.port = port;
  return end;
}

// ::1 and 2001:db8::7.
inline constexpr std::array<uint8_t, 16> kLoopback6 = {0, 0, 0, 0, 0, 0, 0, 0,
                                                       0, 0, 0, 0, 0, 0, 0, 1};
inline constexpr std::array<uint8_t, 16> kDoc6 = {0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0,
                                                  0,    0,    0,    0,    0, 0, 0, 7};

// The document's example: probe at 0x7FFC12345678, probe bytes 10..1F, the client at
// 127.0.0.1:51234 talking to the server at 127.0.0.1:7400.
inline HandOverRequest SampleRequest() {
  HandOverRequest request;
  request.probe_address = 0x00007FFC12345678ull;
  for (size_t i = 0; i < request.probe.size(); ++i)
    request.probe[i] = static_cast<uint8_t>(0x10 + i);
  request.client_end = V4End({127, 0, 0, 1}, 51234);
  request.server_end = V4End({127, 0, 0, 1}, 7400);
  return request;
}

inline std::vector<uint8_t> RequestBytes(const HandOverRequest& request) {
  const auto bytes = EncodeHandOverRequest(request);
  return {bytes.begin(), bytes.end()};
}

inline void ExpectRequestRefused(const std::vector<uint8_t>& bytes, StatusCode code,
                                 const std::string& needle) {
  Result<HandOverRequest> r = DecodeHandOverRequest(bytes);
  ASSERT_FALSE(r.ok()) << needle;
  EXPECT_EQ(r.status().code(), code) << r.status().ToString();
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().ToString();
}

}  // namespace kvault::transport::testing
