#include "kvault/transport/messages.h"

#include <algorithm>
#include <string>
#include <vector>

namespace kvault::transport {
namespace {

template <typename M>
Result<Message> DecodeAs(std::span<const uint8_t> body, const ProtocolLimits& limits) {
  Result<M> m = M::DecodeBody(body, limits);
  if (!m.ok()) return m.status();
  return Message(std::move(m).value());
}

}  // namespace

MessageType TypeOf(const Message& message) {
  return std::visit([](const auto& m) { return std::decay_t<decltype(m)>::kType; }, message);
}

bool AllowedBeforeAuth(MessageType type) {
  return type == MessageType::kHello || type == MessageType::kAuth || type == MessageType::kPing;
}

uint64_t MaxBodyBeforeAuth(const ProtocolLimits& limits) {
  Hello longest;
  longest.tenant.assign(limits.max_string_bytes, 'x');
  longest.client_name.assign(limits.max_string_bytes, 'x');
  longest.worker_address.assign(limits.max_worker_address_bytes, 0);
  std::vector<uint8_t> hello, auth, ping;
  longest.EncodeBody(&hello);
  Auth{}.EncodeBody(&auth);
  Ping{}.EncodeBody(&ping);
  return std::max({hello.size(), auth.size(), ping.size()});
}

Status AppendMessageFrame(const Message& message, uint64_t request_id, const ProtocolLimits& limits,
                          std::vector<uint8_t>* out) {
  return std::visit([&](const auto& m) { return AppendFrame(m, request_id, limits, out); },
                    message);
}

Result<Message> DecodeMessage(MessageType type, std::span<const uint8_t> body,
                              const ProtocolLimits& limits) {
  switch (type) {
    case MessageType::kHello:
      return DecodeAs<Hello>(body, limits);
    case MessageType::kHelloReply:
      return DecodeAs<HelloReply>(body, limits);
    case MessageType::kAuth:
      return DecodeAs<Auth>(body, limits);
    case MessageType::kAuthReply:
      return DecodeAs<AuthReply>(body, limits);
    case MessageType::kProveWorker:
      return DecodeAs<ProveWorker>(body, limits);
    case MessageType::kProveWorkerReply:
      return DecodeAs<ProveWorkerReply>(body, limits);
    case MessageType::kAttachMemory:
      return DecodeAs<AttachMemory>(body, limits);
    case MessageType::kAttachMemoryReply:
      return DecodeAs<AttachMemoryReply>(body, limits);
    case MessageType::kLookup:
      return DecodeAs<Lookup>(body, limits);
    case MessageType::kLookupReply:
      return DecodeAs<LookupReply>(body, limits);
    case MessageType::kStore:
      return DecodeAs<Store>(body, limits);
    case MessageType::kStoreReply:
      return DecodeAs<StoreReply>(body, limits);
    case MessageType::kLoad:
      return DecodeAs<Load>(body, limits);
    case MessageType::kLoadReply:
      return DecodeAs<LoadReply>(body, limits);
    case MessageType::kReleaseLease:
      return DecodeAs<ReleaseLease>(body, limits);
    case MessageType::kReleaseLeaseReply:
      return DecodeAs<ReleaseLeaseReply>(body, limits);
    case MessageType::kDelete:
      return DecodeAs<Delete>(body, limits);
    case MessageType::kDeleteReply:
      return DecodeAs<DeleteReply>(body, limits);
    case MessageType::kGpuExport:
      return DecodeAs<GpuExport>(body, limits);
    case MessageType::kGpuExportReply:
      return DecodeAs<GpuExportReply>(body, limits);
    case MessageType::kReleaseMemory:
      return DecodeAs<ReleaseMemory>(body, limits);
    case MessageType::kReleaseMemoryReply:
      return DecodeAs<ReleaseMemoryReply>(body, limits);
    case MessageType::kStats:
      return DecodeAs<Stats>(body, limits);
    case MessageType::kStatsReply:
      return DecodeAs<StatsReply>(body, limits);
    case MessageType::kPing:
      return DecodeAs<Ping>(body, limits);
    case MessageType::kPong:
      return DecodeAs<Pong>(body, limits);
    case MessageType::kError:
      return DecodeAs<ErrorReply>(body, limits);
  }
  return Status::Corruption("unknown message type " + std::to_string(static_cast<uint16_t>(type)));
}

}  // namespace kvault::transport
