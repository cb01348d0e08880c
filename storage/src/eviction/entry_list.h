#pragma once
// Intrusive doubly linked lists over dense EntryIds, shared by the eviction policies.
//
// One EntryLinks holds a (prev, next) pair per entry id (8 bytes); any number of EntryList heads
// thread through it, and an entry sits in at most one of them at a time. Every operation is O(1).
// Head is the most recently pushed end, tail the oldest. Thread-compatible.

#include <cstdint>
#include <vector>

#include "kvault/storage/eviction_policy.h"

namespace kvault::storage {

struct EntryList {
  EntryId head = kNoEntry;  // newest
  EntryId tail = kNoEntry;  // oldest
  uint32_t size = 0;
  bool empty() const { return size == 0; }
};

class EntryLinks {
 public:
  // Makes room for ids up to `id` inclusive (amortised O(1)).
  void Grow(EntryId id) {
    if (id >= links_.size()) links_.resize(static_cast<size_t>(id) + 1);
  }
  size_t capacity() const { return links_.size(); }

  EntryId Next(EntryId id) const { return links_[id].next; }  // towards the tail
  EntryId Prev(EntryId id) const { return links_[id].prev; }  // towards the head

  void PushHead(EntryList& list, EntryId id) {
    Link& l = links_[id];
    l.prev = kNoEntry;
    l.next = list.head;
    if (list.head != kNoEntry) {
      links_[list.head].prev = id;
    } else {
      list.tail = id;
    }
    list.head = id;
    ++list.size;
  }

  // Puts `id` right behind `anchor` (on the tail side); `anchor` is in `list`.
  void InsertAfter(EntryList& list, EntryId anchor, EntryId id) {
    Link& l = links_[id];
    Link& a = links_[anchor];
    l.prev = anchor;
    l.next = a.next;
    if (a.next != kNoEntry) {
      links_[a.next].prev = id;
    } else {
      list.tail = id;
    }
    a.next = id;
    ++list.size;
  }

  // Precondition: `id` is in `list`.
  void Unlink(EntryList& list, EntryId id) {
    Link& l = links_[id];
    if (l.prev != kNoEntry) {
      links_[l.prev].next = l.next;
    } else {
      list.head = l.next;
    }
    if (l.next != kNoEntry) {
      links_[l.next].prev = l.prev;
    } else {
      list.tail = l.prev;
    }
    l.prev = l.next = kNoEntry;
    --list.size;
  }

  void MoveToHead(EntryList& list, EntryId id) {
    if (list.head == id) return;
    Unlink(list, id);
    PushHead(list, id);
  }

 private:
  struct Link {
    EntryId prev = kNoEntry;
    EntryId next = kNoEntry;
  };
  std::vector<Link> links_;
};

}  // namespace kvault::storage
