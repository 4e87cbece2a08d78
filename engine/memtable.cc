#include "engine/memtable.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <new>

#include "engine/check.h"

namespace spool::engine {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "RocksDB stores an entry's tag little-endian; Compare loads it as a native integer");

// 4^12 entries before the top level stops thinning the search: a 64 MiB memtable holds well
// under a million.
constexpr int kMaxHeight = 12;

// A memtable entry as RocksDB encodes it: the internal key's length as a varint32, the internal
// key (the user key, then an 8-byte little-endian tag: sequence number << 8 | value type), then
// the value, which the memtable never looks at.
struct Key {
  const char* user;
  size_t user_size;
  uint64_t tag;
};

const char* SkipVarint32(const char* p, uint32_t* value) {
  uint32_t result = 0;
  for (int shift = 0; shift <= 28; shift += 7) {
    uint32_t byte = static_cast<unsigned char>(*p++);
    result |= (byte & 0x7f) << shift;
    if (byte < 0x80) {
      *value = result;
      return p;
    }
  }
  SPOOL_CHECK(false, "a memtable entry's length is longer than a varint32");
}

Key FromInternalKey(const char* p, size_t size) {
  SPOOL_CHECK(size >= 8, "an internal key is shorter than its 8-byte tag");
  uint64_t tag;
  std::memcpy(&tag, p + size - 8, 8);
  return {p, size - 8, tag};
}

Key FromEntry(const char* entry) {
  uint32_t size;
  const char* p = SkipVarint32(entry, &size);
  return FromInternalKey(p, size);
}

uint64_t LoadBigEndian64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return __builtin_bswap64(v);
}

// The order RocksDB's memtables keep over its bytewise comparator: user keys bytewise (a key
// before the longer keys it is a prefix of), and for one user key the newest entry (largest
// sequence number) first; the value type does not take part. Message keys are 16 bytes (queue id,
// seq): two integer comparisons.
int CompareKeys(const Key& a, const Key& b) {
  if (a.user_size == 16 && b.user_size == 16) {
    uint64_t x = LoadBigEndian64(a.user);
    uint64_t y = LoadBigEndian64(b.user);
    if (x == y) {
      x = LoadBigEndian64(a.user + 8);
      y = LoadBigEndian64(b.user + 8);
    }
    if (x != y) return x < y ? -1 : 1;
  } else {
    size_t common = std::min(a.user_size, b.user_size);
    int r = common == 0 ? 0 : std::memcmp(a.user, b.user, common);
    if (r != 0) return r;
    if (a.user_size != b.user_size) return a.user_size < b.user_size ? -1 : 1;
  }
  uint64_t a_seq = a.tag >> 8, b_seq = b.tag >> 8;  // like RocksDB's memtable, not by type
  if (a_seq != b_seq) return a_seq > b_seq ? -1 : 1;
  return 0;
}

// What a search looks for: the decoded key, and for check_order the form RocksDB's comparator
// takes (a memtable entry, or else an internal key).
struct Target {
  Key key;
  const char* entry = nullptr;
  rocksdb::Slice internal_key;
};

Target TargetOfEntry(const char* entry) { return {FromEntry(entry), entry, {}}; }

// RocksDB hands Get its key as a LookupKey, a class its public headers only declare. In RocksDB
// 7.8 (Debian 12's) it starts with three pointers: the key in memtable form (varint32 length,
// internal key), the internal key within it, and the end. MemTableRep's own Get would do
// without it, but it never frees the iterator it makes (7.8.3), so every Get would leak one.
// The layout is checked on every call, before anything is read through it.
struct LookupKeyLayout {
  const char* start;
  const char* internal_key;
  const char* end;
};

const char* LookupKeyEntry(const rocksdb::LookupKey& k) {
  const auto* l = reinterpret_cast<const LookupKeyLayout*>(&k);
  bool plausible = l->start != nullptr && l->internal_key > l->start &&
                   l->internal_key - l->start <= 5 && l->end - l->internal_key >= 8;
  SPOOL_CHECK(plausible, "RocksDB's LookupKey is not laid out as engine/memtable.cc expects");
  uint32_t size;
  const char* p = SkipVarint32(l->start, &size);
  SPOOL_CHECK(p == l->internal_key && size == static_cast<size_t>(l->end - l->internal_key),
              "RocksDB's LookupKey is not laid out as engine/memtable.cc expects");
  return l->start;
}

struct Node;
using Link = std::atomic<Node*>;

// A node's links sit in front of its entry: the node's address is that of its level-0 link,
// the link for level i is i slots before it, and the entry starts right after it. Until the
// node is linked in, its level-0 link holds its height.
struct Node {
  Link& At(int level) {
    return *reinterpret_cast<Link*>(reinterpret_cast<char*>(this) -
                                    static_cast<ptrdiff_t>(level) * sizeof(Link));
  }
  Node* Next(int level) { return At(level).load(std::memory_order_acquire); }
  const char* Entry() { return reinterpret_cast<const char*>(this) + sizeof(Link); }
  static Node* OfEntry(const char* entry) {
    return reinterpret_cast<Node*>(const_cast<char*>(entry) - sizeof(Link));
  }
};

class FingerSkipList final : public rocksdb::MemTableRep {
 public:
  FingerSkipList(const KeyComparator& rocksdb_order, rocksdb::Allocator* allocator,
                 bool check_order)
      : MemTableRep(allocator), rocksdb_order_(rocksdb_order), check_order_(check_order) {
    for (Link& l : head_links_) l.store(nullptr, std::memory_order_relaxed);
    std::fill(std::begin(finger_), std::end(finger_), Head());
  }

  rocksdb::KeyHandle Allocate(const size_t len, char** buf) override {
    int height = RandomHeight();
    size_t links = sizeof(Link) * height;
    char* raw;
    MemTableRep::Allocate(links + len + alignof(Link) - 1, &raw);  // the arena's, unaligned
    uintptr_t base = (reinterpret_cast<uintptr_t>(raw) + alignof(Link) - 1) & ~(alignof(Link) - 1);
    for (int i = 0; i < height; ++i) new (reinterpret_cast<Link*>(base) + i) Link(nullptr);
    Node* node = reinterpret_cast<Node*>(base + links - sizeof(Link));
    node->At(0).store(reinterpret_cast<Node*>(static_cast<uintptr_t>(height)),
                      std::memory_order_relaxed);
    *buf = const_cast<char*>(node->Entry());
    return *buf;
  }

  void Insert(rocksdb::KeyHandle handle) override {
    SPOOL_CHECK(InsertKey(handle), "a memtable entry was inserted twice");
  }

  // Single writer (allow_concurrent_memtable_write is off); readers run concurrently and see a
  // node only once it is fully linked below the level they read (release here, acquire there).
  bool InsertKey(rocksdb::KeyHandle handle) override {
    Node* node = Node::OfEntry(static_cast<const char*>(handle));
    int height =
        static_cast<int>(reinterpret_cast<uintptr_t>(node->At(0).load(std::memory_order_relaxed)));
    Target target = TargetOfEntry(node->Entry());
    int max_height = max_height_.load(std::memory_order_relaxed);

    // The finger holds, at every level, the last node before one position in the list (at
    // first, the head everywhere). If its node at level L still brackets the new key, so do
    // those above L: they come no later than it, and the node after each of them comes no
    // earlier than the node after it. So only levels L and below need searching, from there.
    int level = 0;
    while (level < max_height && !Brackets(finger_[level], level, target)) ++level;
    Node* prev[kMaxHeight];
    std::copy(std::begin(finger_), std::end(finger_), prev);
    Node* x = level < max_height ? finger_[level] : Head();
    int after = 1;  // how the new key compares with the node after x at level 0
    for (int i = std::min(level, max_height - 1); i >= 0; --i) {
      for (Node* next = Relaxed(x, i); next != nullptr; next = Relaxed(x, i)) {
        int c = Compare(next, target);
        if (c >= 0) {
          if (i == 0) after = c;
          break;
        }
        x = next;
      }
      prev[i] = x;
    }
    if (after == 0) return false;  // the same key and sequence number: RocksDB's to refuse

    if (height > max_height) max_height_.store(height, std::memory_order_relaxed);
    if (check_order_) CheckPlace(prev, height, target);
    for (int i = 0; i < height; ++i) {
      node->At(i).store(Relaxed(prev[i], i), std::memory_order_relaxed);
      prev[i]->At(i).store(node, std::memory_order_release);
      prev[i] = node;
    }
    std::copy(std::begin(prev), std::end(prev), finger_);
    return true;
  }

  bool Contains(const char* entry) const override {
    Target target = TargetOfEntry(entry);
    Node* n = FindGreaterOrEqual(target);
    return n != nullptr && Compare(n, target) == 0;
  }

  void Get(const rocksdb::LookupKey& k, void* callback_args,
           bool (*callback_func)(void* arg, const char* entry)) override {
    for (Node* n = FindGreaterOrEqual(TargetOfEntry(LookupKeyEntry(k)));
         n != nullptr && callback_func(callback_args, n->Entry()); n = n->Next(0)) {
    }
  }

  // Nodes live in the memtable's arena, which RocksDB counts itself.
  size_t ApproximateMemoryUsage() override { return 0; }

  class Iterator final : public MemTableRep::Iterator {
   public:
    // block: where the iterator was placed, to be handed back; null if it was made with new.
    Iterator(const FingerSkipList* list, void* block) : list_(list), block_(block) {}
    ~Iterator() override {
      if (block_ != nullptr) IteratorBlocks::Give(block_);
    }
    bool Valid() const override { return node_ != nullptr; }
    const char* key() const override { return node_->Entry(); }
    void Next() override { node_ = node_->Next(0); }
    void Prev() override { node_ = list_->FindLessThan(TargetOfEntry(node_->Entry())); }
    void Seek(const rocksdb::Slice& internal_key, const char* entry) override {
      node_ = list_->FindGreaterOrEqual(Of(internal_key, entry));
    }
    void SeekForPrev(const rocksdb::Slice& internal_key, const char* entry) override {
      Target target = Of(internal_key, entry);
      node_ = list_->FindGreaterOrEqual(target);
      if (node_ == nullptr || list_->Compare(node_, target) != 0) {
        node_ = list_->FindLessThan(target);
      }
    }
    void SeekToFirst() override { node_ = list_->Head()->Next(0); }
    void SeekToLast() override { node_ = list_->FindLast(); }

   private:
    static Target Of(const rocksdb::Slice& internal_key, const char* entry) {
      if (entry != nullptr) return TargetOfEntry(entry);
      return {FromInternalKey(internal_key.data(), internal_key.size()), nullptr, internal_key};
    }
    const FingerSkipList* list_;
    void* const block_;
    Node* node_ = nullptr;
  };

  // Blocks for iterators, cached per thread. A block handed back by a destructor is reused
  // only by its own thread, so never before that destructor has returned. A thread keeps at
  // most kKept; a block beyond that is freed on the thread's next Take or Give, when the
  // destructor that gave it is over.
  class IteratorBlocks {
   public:
    static void* Take() {
      Cache& c = cache_;
      c.FreeSpare();
      if (c.kept > 0) return c.blocks[--c.kept];
      return ::operator new(sizeof(Iterator));
    }
    static void Give(void* block) {
      Cache& c = cache_;
      if (c.gone) return;  // only as the thread ends: its cache is freed already
      c.FreeSpare();
      if (c.kept < kKept) {
        c.blocks[c.kept++] = block;
      } else {
        c.spare = block;
      }
    }

   private:
    static constexpr int kKept = 8;
    struct Cache {
      void* blocks[kKept];
      int kept = 0;
      void* spare = nullptr;
      bool gone = false;
      void FreeSpare() {
        ::operator delete(spare);
        spare = nullptr;
      }
      ~Cache() {
        FreeSpare();
        while (kept > 0) ::operator delete(blocks[--kept]);
        gone = true;
      }
    };
    static thread_local Cache cache_;
  };

  // With an arena (a DB iterator's, or a flush's) RocksDB only runs the iterator's destructor
  // and never frees it; Arena is not in RocksDB's public headers, so the iterator cannot be put
  // there. Nor may it take memory from the memtable's own arena: RocksDB records a memtable's
  // size when it becomes immutable and checks it has not grown. So such an iterator lives in a
  // block from a small per-thread cache that its destructor hands the block back to.
  MemTableRep::Iterator* GetIterator(rocksdb::Arena* arena) override {
    if (arena == nullptr) return new Iterator(this, nullptr);
    void* block = IteratorBlocks::Take();
    return new (block) Iterator(this, block);
  }

 private:
  Node* Head() const {
    return reinterpret_cast<Node*>(const_cast<Link*>(&head_links_[kMaxHeight - 1]));
  }
  static Node* Relaxed(Node* n, int level) { return n->At(level).load(std::memory_order_relaxed); }

  int Compare(Node* n, const Target& t) const {
    int ours = CompareKeys(FromEntry(n->Entry()), t.key);
    if (check_order_) {
      int theirs = t.entry != nullptr ? rocksdb_order_(n->Entry(), t.entry)
                                      : rocksdb_order_(n->Entry(), t.internal_key);
      SPOOL_CHECK((ours < 0) == (theirs < 0) && (ours == 0) == (theirs == 0),
                  "our memtable orders two keys differently from RocksDB");
    }
    return ours;
  }

  // check_order: the new node goes between its neighbours at every level it joins. A search
  // finds the right node even through a misplaced upper link (it only moves to nodes before its
  // target, and level 0 settles it), so only this check sees the finger go wrong.
  void CheckPlace(Node* const* prev, int height, const Target& t) const {
    for (int i = 0; i < height; ++i) {
      Node* next = Relaxed(prev[i], i);
      SPOOL_CHECK(prev[i] == Head() || Compare(prev[i], t) < 0,
                  "a memtable node would follow a later key");
      SPOOL_CHECK(next == nullptr || Compare(next, t) > 0,
                  "a memtable node would precede an earlier key");
    }
  }

  // Whether prev at this level is before the target and the node after it is not.
  bool Brackets(Node* prev, int level, const Target& t) const {
    if (prev != Head() && Compare(prev, t) >= 0) return false;
    Node* next = Relaxed(prev, level);
    return next == nullptr || Compare(next, t) >= 0;
  }

  // The first node at or after the target, or null.
  Node* FindGreaterOrEqual(const Target& t) const {
    Node* x = Head();
    Node* known_after = nullptr;  // a node already compared and found not before the target
    for (int level = max_height_.load(std::memory_order_relaxed) - 1;;) {
      Node* next = x->Next(level);
      int c = next == nullptr || next == known_after ? 1 : Compare(next, t);
      if (c < 0) {
        x = next;
      } else if (c == 0 || level == 0) {
        return next;
      } else {
        known_after = next;
        --level;
      }
    }
  }

  // The last node before the target, or null.
  Node* FindLessThan(const Target& t) const {
    Node* x = Head();
    Node* known_after = nullptr;
    for (int level = max_height_.load(std::memory_order_relaxed) - 1;;) {
      Node* next = x->Next(level);
      if (next != nullptr && next != known_after && Compare(next, t) < 0) {
        x = next;
      } else if (level == 0) {
        return x == Head() ? nullptr : x;
      } else {
        known_after = next;
        --level;
      }
    }
  }

  Node* FindLast() const {
    Node* x = Head();
    for (int level = max_height_.load(std::memory_order_relaxed) - 1; level >= 0; --level) {
      for (Node* next = x->Next(level); next != nullptr; next = x->Next(level)) x = next;
    }
    return x == Head() ? nullptr : x;
  }

  // Height h with probability 3/4 * (1/4)^(h-1): the writer's only, like the finger.
  int RandomHeight() {
    int height = 1;
    while (height < kMaxHeight) {
      rng_ ^= rng_ << 13;
      rng_ ^= rng_ >> 7;
      rng_ ^= rng_ << 17;
      if ((rng_ & 3) != 0) break;
      ++height;
    }
    return height;
  }

  const KeyComparator& rocksdb_order_;
  const bool check_order_;
  Link head_links_[kMaxHeight];  // level i is head_links_[kMaxHeight - 1 - i]
  std::atomic<int> max_height_{1};
  Node* finger_[kMaxHeight];
  uint64_t rng_ = 0x9e3779b97f4a7c15;
};

thread_local FingerSkipList::IteratorBlocks::Cache FingerSkipList::IteratorBlocks::cache_;

class FingerSkipListFactory final : public rocksdb::MemTableRepFactory {
 public:
  explicit FingerSkipListFactory(bool check_order) : check_order_(check_order) {}
  using MemTableRepFactory::CreateMemTableRep;
  rocksdb::MemTableRep* CreateMemTableRep(const rocksdb::MemTableRep::KeyComparator& order,
                                          rocksdb::Allocator* allocator,
                                          const rocksdb::SliceTransform*,
                                          rocksdb::Logger*) override {
    return new FingerSkipList(order, allocator, check_order_);
  }
  const char* Name() const override { return "spool.FingerSkipList"; }
  bool IsInsertConcurrentlySupported() const override { return false; }
  bool CanHandleDuplicatedKey() const override { return true; }  // InsertKey says false

 private:
  const bool check_order_;
};

}  // namespace

std::shared_ptr<rocksdb::MemTableRepFactory> NewFingerSkipListFactory(bool check_order) {
  return std::make_shared<FingerSkipListFactory>(check_order);
}

}  // namespace spool::engine
