// ReleaseThread: what it is handed is dropped on its own thread, in the order handed over; a
// reference held elsewhere keeps its object alive (the last one frees it, wherever it is), unless
// the object was made with Share (then it is destroyed on the release thread all the same); the
// destructor drops what is still queued.
#include "core/release_thread.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace kvault::server {
namespace {

using namespace std::chrono_literals;

// Records, as it is destroyed, its number and the thread that destroyed it.
struct Dropped {
  std::mutex mu;
  std::vector<int> order;
  std::vector<std::thread::id> threads;
};
struct Tracked {
  Tracked(int n, Dropped* d, std::chrono::milliseconds linger = 0ms)
      : n(n), dropped(d), linger(linger) {}
  ~Tracked() {
    std::this_thread::sleep_for(linger);
    std::lock_guard lock(dropped->mu);
    dropped->order.push_back(n);
    dropped->threads.push_back(std::this_thread::get_id());
  }
  int n;
  Dropped* dropped;
  std::chrono::milliseconds linger;
};

bool AwaitNonePending(const ReleaseThread& r) {
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (r.pending() != 0) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

TEST(ReleaseThread, DropsOnItsOwnThreadInTheOrderHandedOver) {
  Dropped dropped;
  ReleaseThread releases;
  for (int i = 0; i < 5; ++i) releases.Release(std::make_shared<Tracked>(i, &dropped));
  ASSERT_TRUE(AwaitNonePending(releases));
  std::lock_guard lock(dropped.mu);
  EXPECT_EQ(dropped.order, (std::vector<int>{0, 1, 2, 3, 4}));
  ASSERT_EQ(dropped.threads.size(), 5u);
  for (std::thread::id t : dropped.threads) {
    EXPECT_NE(t, std::this_thread::get_id());
    EXPECT_EQ(t, dropped.threads[0]);  // one thread
  }
}

TEST(ReleaseThread, AReferenceHeldElsewhereKeepsItsObject) {
  Dropped dropped;
  ReleaseThread releases;
  auto kept = std::make_shared<Tracked>(7, &dropped);
  releases.Release(kept);
  releases.Release(nullptr);  // nothing
  ASSERT_TRUE(AwaitNonePending(releases));
  {
    std::lock_guard lock(dropped.mu);
    EXPECT_TRUE(dropped.order.empty()) << "an object still referenced here was destroyed";
  }
  kept.reset();  // the last reference: freed here
  std::lock_guard lock(dropped.mu);
  EXPECT_EQ(dropped.order, std::vector<int>{7});
  EXPECT_EQ(dropped.threads.at(0), std::this_thread::get_id());
}

TEST(ReleaseThread, ASharedObjectIsDestroyedThereWhicheverThreadDropsTheLastReference) {
  Dropped dropped;
  ReleaseThread releases;
  std::shared_ptr<Tracked> shared = releases.Share(std::make_unique<Tracked>(3, &dropped));
  std::shared_ptr<Tracked> copy = shared;  // as a copy running on an io thread holds a region
  shared.reset();
  ASSERT_TRUE(AwaitNonePending(releases));
  {
    std::lock_guard lock(dropped.mu);
    EXPECT_TRUE(dropped.order.empty()) << "destroyed while a reference was held";
  }
  std::thread::id io_thread;
  std::thread io([&] {  // the last reference goes on another thread
    io_thread = std::this_thread::get_id();
    copy.reset();
  });
  io.join();
  ASSERT_TRUE(AwaitNonePending(releases));
  std::lock_guard lock(dropped.mu);
  EXPECT_EQ(dropped.order, std::vector<int>{3});
  ASSERT_EQ(dropped.threads.size(), 1u);
  EXPECT_NE(dropped.threads[0], io_thread);
  EXPECT_NE(dropped.threads[0], std::this_thread::get_id());
}

// The first object's destructor waits for the test, so the others are surely still queued when
// the ReleaseThread's destructor starts.
struct Latched {
  explicit Latched(std::atomic<bool>* go) : go(go) {}
  ~Latched() {
    while (!go->load()) std::this_thread::sleep_for(1ms);
  }
  std::atomic<bool>* go;
};

TEST(ReleaseThread, TheDestructorDropsWhatIsStillQueued) {
  Dropped dropped;
  std::atomic<bool> go{false};
  {
    ReleaseThread releases;
    releases.Release(std::make_shared<Latched>(&go));
    for (int i = 1; i < 4; ++i) releases.Release(std::make_shared<Tracked>(i, &dropped));
    EXPECT_EQ(releases.pending(), 4u);
    go.store(true);
  }
  std::lock_guard lock(dropped.mu);
  EXPECT_EQ(dropped.order, (std::vector<int>{1, 2, 3}));
}

// What the release thread drops may hand more over (a peer holding its regions), also while the
// destructor drains the queue, as when the mover goes with its peers: that is destroyed there
// too, after what was queued before it, and before the destructor returns.
TEST(ReleaseThread, WhatItHandsOverWhileTheDestructorDrainsIsDestroyedThereToo) {
  Dropped dropped;
  struct Holder {
    std::shared_ptr<Tracked> inner;
  };
  std::atomic<bool> go{false};
  std::thread opener;
  {
    ReleaseThread releases;
    releases.Release(std::make_shared<Latched>(&go));  // holds the release thread
    auto holder = std::make_shared<Holder>();
    holder->inner = releases.Share(std::make_unique<Tracked>(1, &dropped));
    releases.Release(std::move(holder));  // dropped, it hands `inner` over
    releases.Release(std::make_shared<Tracked>(2, &dropped));
    EXPECT_EQ(releases.pending(), 3u);
    // Let go once the destructor below (most likely) waits for the queue.
    opener = std::thread([&go] {
      std::this_thread::sleep_for(100ms);
      go.store(true);
    });
  }
  opener.join();
  std::lock_guard lock(dropped.mu);
  EXPECT_EQ(dropped.order, (std::vector<int>{2, 1}));
  ASSERT_EQ(dropped.threads.size(), 2u);
  for (std::thread::id t : dropped.threads) {
    EXPECT_NE(t, std::this_thread::get_id());
    EXPECT_EQ(t, dropped.threads[0]);
  }
}

}  // namespace
}  // namespace kvault::server
