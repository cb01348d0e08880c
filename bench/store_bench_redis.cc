// The redis baseline of `kvault-bench store`: a redis-server started for the run (persistence off)
// and SET/GET of the same objects through hiredis, a real RESP client: one blocking connection per
// thread, one command in flight per connection, like the kvault side's one request per thread.
#include <cstring>
#include <filesystem>

#include "store_bench.h"

#ifdef KVAULT_HAVE_HIREDIS
#include <hiredis.h>
#endif

namespace kvault::bench::store_bench {

#ifdef KVAULT_HAVE_HIREDIS

namespace {

using ObjectFn = std::function<const uint8_t*(uint32_t, uint64_t)>;

std::string KeyName(uint32_t thread, uint64_t j) {
  return "kvault-bench:" + std::to_string(thread) + ":" + std::to_string(j);
}

// Connects to 127.0.0.1:port within `timeout_ms`; nullptr with `why` set otherwise.
redisContext* Connect(uint16_t port, int timeout_ms, std::string& why) {
  const timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  redisContext* ctx = redisConnectWithTimeout("127.0.0.1", port, tv);
  if (ctx == nullptr) {
    why = "out of memory";
    return nullptr;
  }
  if (ctx->err != 0) {
    why = ctx->errstr;
    redisFree(ctx);
    return nullptr;
  }
  const timeval io{30, 0};
  redisSetTimeout(ctx, io);
  return ctx;
}

}  // namespace

struct RedisSide::Connection {
  redisContext* ctx = nullptr;
  ~Connection() {
    if (ctx != nullptr) redisFree(ctx);
  }
  // Runs one command; the reply (owned by the caller, freed with freeReplyObject) or nullptr with
  // `why` set when the connection failed.
  redisReply* Command(std::initializer_list<std::pair<const char*, size_t>> args,
                      std::string& why) {
    const char* argv[4];
    size_t lens[4];
    int n = 0;
    for (const auto& [p, len] : args) {
      argv[n] = p;
      lens[n++] = len;
    }
    auto* reply = static_cast<redisReply*>(redisCommandArgv(ctx, n, argv, lens));
    if (reply == nullptr) why = ctx->errstr[0] != '\0' ? ctx->errstr : "connection failed";
    return reply;
  }
};

Result<std::unique_ptr<RedisSide>> RedisSide::Create(const Config& c, const std::string& scratch) {
  if (!CanExecute(c.redis)) {
    return Status::Unavailable("cannot run " + c.redis + " (Debian package redis-server)");
  }
  std::unique_ptr<RedisSide> side(new RedisSide());
  std::string last_error;
  // The port is free when chosen but may be taken before redis binds it: then try another.
  for (int attempt = 0; attempt < 3; ++attempt) {
    KVAULT_ASSIGN_OR_RETURN(side->port_, FreeLoopbackPort());
    ChildProcess::Options o;
    o.argv = {c.redis,  "--port",       std::to_string(side->port_),
              "--bind", "127.0.0.1",    "--save",
              "",       "--appendonly", "no",
              "--dir",  scratch,        "--logfile",
              ""};
    o.stdout_file = (std::filesystem::path(scratch) / "redis.log").string();
    o.stderr_file = (std::filesystem::path(scratch) / "redis.err").string();
    KVAULT_ASSIGN_OR_RETURN(side->server_, ChildProcess::Start(o));
    // Ready when it answers PING; up to 10 s.
    for (int i = 0; i < 200 && side->server_->running(); ++i) {
      std::string why;
      Connection probe;
      probe.ctx = Connect(side->port_, 200, why);
      if (probe.ctx != nullptr) {
        redisReply* reply = probe.Command({{"PING", 4}}, why);
        const bool pong = reply != nullptr && reply->type == REDIS_REPLY_STATUS;
        if (reply != nullptr) freeReplyObject(reply);
        if (pong) return side;
      }
      last_error = why;
      ::usleep(50'000);
    }
    side->server_->Stop(1);
  }
  return Status::Unavailable("redis-server did not answer PING (see " + scratch +
                             "/redis.log): " + last_error);
}

RedisSide::~RedisSide() { Stop(); }

void RedisSide::Stop() {
  connections_.clear();
  if (server_) server_->Stop(5);
}

Status RedisSide::Prepare(uint32_t threads, uint64_t object_bytes) {
  object_bytes_ = object_bytes;
  while (connections_.size() < threads) {
    auto conn = std::make_unique<Connection>();
    std::string why;
    conn->ctx = Connect(port_, 2000, why);
    if (conn->ctx == nullptr) return Status::Unavailable("connect to redis-server: " + why);
    connections_.push_back(std::move(conn));
  }
  connections_.resize(threads);
  // Keys of an earlier row (other sizes) would only cost redis memory.
  std::string why;
  redisReply* reply = connections_[0]->Command({{"FLUSHALL", 8}}, why);
  if (reply == nullptr) return Status::Unavailable("redis FLUSHALL: " + why);
  freeReplyObject(reply);
  return Status::Ok();
}

namespace {

// One SET; kFailed with `why` unless redis answered +OK.
Step Set(RedisSide::Connection& conn, const std::string& key, const uint8_t* value, uint64_t len,
         std::string& why) {
  redisReply* reply = conn.Command(
      {{"SET", 3}, {key.data(), key.size()}, {reinterpret_cast<const char*>(value), len}}, why);
  if (reply == nullptr) return Step::kFailed;
  const bool ok = reply->type == REDIS_REPLY_STATUS;
  if (!ok) why = reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected SET reply";
  freeReplyObject(reply);
  return ok ? Step::kOk : Step::kFailed;
}

}  // namespace

Window RedisSide::SetWindow(const Config& c, uint64_t count, const ObjectFn& object) {
  const uint32_t threads = static_cast<uint32_t>(connections_.size());
  return RunWindow(
      threads, c.ops > 0 ? 0 : c.seconds, c.ops > 0 ? (c.ops + threads - 1) / threads : 0,
      [&](uint32_t t, uint64_t i, uint64_t& bytes, std::string& why) {
        if (c.ops == 0 && i >= count) return Step::kDone;
        const uint64_t j = i % count;
        const Step s = Set(*connections_[t], KeyName(t, j), object(t, j), object_bytes_, why);
        bytes = s == Step::kOk ? object_bytes_ : 0;
        return s;
      });
}

Window RedisSide::GetWindow(const Config& c, uint64_t count, const ObjectFn& object) {
  const uint32_t threads = static_cast<uint32_t>(connections_.size());
  return RunWindow(
      threads, c.ops > 0 ? 0 : c.seconds, c.ops > 0 ? (c.ops + threads - 1) / threads : 0,
      [&](uint32_t t, uint64_t i, uint64_t& bytes, std::string& why) {
        const uint64_t j = i % count;
        const std::string key = KeyName(t, j);
        redisReply* reply = connections_[t]->Command({{"GET", 3}, {key.data(), key.size()}}, why);
        if (reply == nullptr) return Step::kFailed;
        bool ok = reply->type == REDIS_REPLY_STRING && reply->len == object_bytes_;
        // The first reply of each thread is checked byte for byte (one compare per window).
        if (ok && i == 0) ok = std::memcmp(reply->str, object(t, j), object_bytes_) == 0;
        if (!ok) why = "GET returned other bytes than were SET (or none)";
        freeReplyObject(reply);
        bytes = ok ? object_bytes_ : 0;
        return ok ? Step::kOk : Step::kFailed;
      });
}

Status RedisSide::Fill(uint64_t count, const ObjectFn& object) {
  for (uint32_t t = 0; t < connections_.size(); ++t) {
    for (uint64_t j = 0; j < count; ++j) {
      std::string why;
      if (Set(*connections_[t], KeyName(t, j), object(t, j), object_bytes_, why) != Step::kOk) {
        return Status::IoError("redis SET: " + why);
      }
    }
  }
  return Status::Ok();
}

#else  // !KVAULT_HAVE_HIREDIS

struct RedisSide::Connection {};

Result<std::unique_ptr<RedisSide>> RedisSide::Create(const Config&, const std::string&) {
  return Status::Unavailable("kvault-bench was built without hiredis (Debian libhiredis-dev)");
}
RedisSide::~RedisSide() = default;
void RedisSide::Stop() {}
Status RedisSide::Prepare(uint32_t, uint64_t) { return Status::Unsupported("no hiredis"); }
Window RedisSide::SetWindow(const Config&, uint64_t,
                            const std::function<const uint8_t*(uint32_t, uint64_t)>&) {
  return {};
}
Window RedisSide::GetWindow(const Config&, uint64_t,
                            const std::function<const uint8_t*(uint32_t, uint64_t)>&) {
  return {};
}
Status RedisSide::Fill(uint64_t, const std::function<const uint8_t*(uint32_t, uint64_t)>&) {
  return Status::Unsupported("no hiredis");
}

#endif  // KVAULT_HAVE_HIREDIS

}  // namespace kvault::bench::store_bench
