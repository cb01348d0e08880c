// EngineCore's cache of unpacked remote keys (engine_core.h): per peer, found by the key's sealed
// bytes, kept while batches use them, and whether a key's memory is mapped here.

#include <algorithm>
#include <vector>

#include "ucx/engine_core.h"
#include "ucx/engine_state.h"

namespace kvault::transport {

CachedKey* EngineCore::AcquireKey(Peer& peer, const std::vector<uint8_t>& bytes, Status& error) {
  for (auto it = peer.keys.begin(); it != peer.keys.end(); ++it) {
    if ((*it)->bytes == bytes) {
      peer.keys.splice(peer.keys.begin(), peer.keys, it);
      ++peer.keys.front()->users;
      return peer.keys.front().get();
    }
  }
  Result<UcxRemoteKey> key =
      UcxRemoteKey::Unpack(*peer.ep, bytes, peer.connection ? &*peer.connection : nullptr,
                           /*keep_segment_file=*/residency_ != nullptr);
  if (!key.ok()) {
    error = key.status();
    return nullptr;
  }
  // Make room: drop the least recently used keys that no batch holds.
  for (auto it = peer.keys.end();
       peer.keys.size() >= kMaxCachedKeysPerPeer && it != peer.keys.begin();) {
    --it;
    if ((*it)->users == 0) it = peer.keys.erase(it);
  }
  auto cached = std::make_unique<CachedKey>(CachedKey{bytes, std::move(key).value(), 1, {}});
  if (residency_ != nullptr && cached->key.mapped_in_small_pages()) {
    if (const uint8_t* mapped = MappedHere(*cached, cached->key.base())) {
      cached->resident = ResidentMapping(residency_, mapped, cached->key.length());
    }
  }
  peer.keys.push_front(std::move(cached));
  return peer.keys.front().get();
}

bool EngineCore::ForgetKey(PeerId id, const std::vector<uint8_t>& bytes) {
  auto pit = peers_.find(id);
  if (pit == peers_.end()) return false;
  std::list<std::unique_ptr<CachedKey>>& keys = pit->second->keys;
  // AcquireKey never caches the same bytes twice on one peer.
  auto it =
      std::find_if(keys.begin(), keys.end(), [&](const auto& k) { return k->bytes == bytes; });
  if (it == keys.end()) return false;
  if ((*it)->users > 0) retired_keys_.push_back(std::move(*it));
  keys.erase(it);
  return true;
}

void EngineCore::ReleaseKey(CachedKey* key) {
  --key->users;
  if (key->users == 0) retired_keys_.remove_if([&](const auto& k) { return k.get() == key; });
}

void EngineCore::ReleaseKeys(BatchState& b) {
  for (KeyUse& use : b.keys) {
    if (use.key == nullptr) continue;
    ReleaseKey(use.key);
    use.key = nullptr;
  }
}

bool EngineCore::MapsFirstGet(const TransferBatch& batch) {
  auto t = std::find_if(batch.transfers.begin(), batch.transfers.end(),
                        [](const Transfer& x) { return x.op == TransferOp::kGet; });
  if (t == batch.transfers.end() || t->remote_key >= batch.remote_keys.size()) return false;
  auto pit = peers_.find(t->peer);
  if (pit == peers_.end() || !EnsureEndpoint(t->peer, *pit->second).ok()) return false;
  Status error;
  CachedKey* key = AcquireKey(*pit->second, batch.remote_keys[t->remote_key], error);
  if (key == nullptr) return false;
  const bool yes =
      key->key.Covers(t->remote_address, t->length) && MappedHere(*key, t->remote_address);
  ReleaseKey(key);
  return yes;
}

}  // namespace kvault::transport
