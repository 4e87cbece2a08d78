#include "engine/offline.h"

#include <unistd.h>

#include <filesystem>
#include <map>
#include <memory>

#include "engine/coding.h"
#include "engine/commit_pipeline.h"
#include "engine/storage.pb.h"
#include "engine/store.h"
#include "engine/strings.h"
#include "rocksdb/db.h"

namespace spool::engine {
namespace {

// A read-only view of a store, holding the directory lock while it lives.
class ReadOnlyStore {
 public:
  static absl::StatusOr<std::unique_ptr<ReadOnlyStore>> Open(const std::string& data_dir) {
    if (!std::filesystem::exists(StorePath(data_dir) + "/CURRENT")) {
      return absl::NotFoundError(Cat("no Spool store in ", data_dir));
    }
    auto lock = LockDataDir(data_dir, /*create=*/false);
    if (!lock.ok()) return lock.status();
    std::unique_ptr<ReadOnlyStore> store(new ReadOnlyStore());
    store->lock_fd_ = *lock;
    rocksdb::DB* raw = nullptr;
    rocksdb::DBOptions options = StoreOptions();
    options.create_if_missing = false;
    rocksdb::Status s = rocksdb::DB::OpenForReadOnly(options, StorePath(data_dir), StoreFamilies(),
                                                     &store->handles_, &raw);
    if (!s.ok()) return FromRocks(s, Cat("opening the store in ", StorePath(data_dir)));
    store->db_.reset(raw);
    return store;
  }
  ~ReadOnlyStore() {
    if (db_) {
      for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
      db_->Close();
    }
    if (lock_fd_ >= 0) ::close(lock_fd_);
  }

  rocksdb::DB* db() { return db_.get(); }
  rocksdb::ColumnFamilyHandle* family(int i) { return handles_[i]; }
  const std::vector<rocksdb::ColumnFamilyHandle*>& families() { return handles_; }

 private:
  ReadOnlyStore() = default;
  int lock_fd_ = -1;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
};

constexpr int kDefault = 0, kMessages = 1, kState = 2, kDedup = 3;

struct LoadedQueue {
  storage::QueueRecord record;
  std::array<int64_t, kCounterCount> counters{};
};

// Queue records and counters of the default family; problems are appended to *problems.
std::map<uint64_t, LoadedQueue> LoadQueues(ReadOnlyStore& store,
                                           std::vector<std::string>* problems) {
  std::map<uint64_t, LoadedQueue> queues;
  std::unique_ptr<rocksdb::Iterator> it(store.db()->NewIterator({}, store.family(kDefault)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view key = it->key().ToStringView();
    if (key.size() == 9 && key[0] == kQueuePrefix) {
      storage::QueueRecord r;
      if (!r.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        problems->push_back(
            Cat("queue record ", DecodeBigEndian64(key.substr(1)), " does not parse"));
        continue;
      }
      queues[r.queue_id()].record = r;
    }
  }
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view key = it->key().ToStringView();
    if (key.size() == 10 && key[0] == kCounterPrefix) {
      uint64_t id = DecodeBigEndian64(key.substr(1));
      auto v = DecodeInt64(it->value().ToStringView());
      auto q = queues.find(id);
      if (q == queues.end()) {
        problems->push_back(Cat("counter of deleted queue id ", id, " remains"));
      } else if (!v || static_cast<uint8_t>(key[9]) >= kCounterCount) {
        problems->push_back(Cat("a counter of queue \"", q->second.record.name(), "\" is damaged"));
      } else {
        q->second.counters[static_cast<uint8_t>(key[9])] = *v;
      }
    }
  }
  return queues;
}

std::string MessageName(const std::map<uint64_t, LoadedQueue>& queues, uint64_t queue_id,
                        uint64_t seq) {
  auto q = queues.find(queue_id);
  return Cat("message ", FormatMessageId(seq), " of ",
             q == queues.end() ? Cat("deleted queue id ", queue_id)
                               : Cat("queue \"", q->second.record.name(), "\""));
}

}  // namespace

absl::StatusOr<StoreReport> InspectStore(const std::string& data_dir, int64_t now_ms) {
  auto store = ReadOnlyStore::Open(data_dir);
  if (!store.ok()) return store.status();
  std::vector<std::string> ignored;
  auto queues = LoadQueues(**store, &ignored);
  std::map<uint64_t, QueueStats> stats;
  std::unique_ptr<rocksdb::Iterator> it((*store)->db()->NewIterator({}, (*store)->family(kState)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto parts = ParseMessageKey(it->key().ToStringView());
    storage::StateRecord r;
    if (!parts || !r.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      continue;
    }
    QueueStats& s = stats[parts->queue_id];
    ++s.total;
    if (r.visible_at_ms() <= now_ms) {
      ++s.ready;
    } else if (r.leased()) {
      ++s.leased;
    } else {
      ++s.delayed;
    }
  }
  StoreReport report;
  for (auto& [id, q] : queues) {
    QueueInfo info;
    const storage::QueueRecord& r = q.record;
    info.name = r.name();
    info.create_time_ms = r.create_time_ms();
    info.config.visibility_timeout_ms = r.visibility_timeout_ms();
    info.config.max_deliveries = r.max_deliveries();
    info.config.dead_letter_queue = r.dead_letter_queue();
    info.config.retention_ms = r.retention_ms();
    info.config.delay_ms = r.delay_ms();
    info.config.max_payload_bytes = r.max_payload_bytes();
    info.config.max_depth = r.max_depth();
    info.config.dedup_window_ms = r.dedup_window_ms();
    info.stats = stats[id];
    const auto& counters = q.counters;  // (clang 14 cannot capture a structured binding)
    auto c = [&](Counter x) { return static_cast<uint64_t>(counters[static_cast<int>(x)]); };
    info.stats.enqueued_total = c(Counter::kEnqueued);
    info.stats.acked_total = c(Counter::kAcked);
    info.stats.delivered_total = c(Counter::kDelivered);
    info.stats.dead_lettered_total = c(Counter::kDeadLettered);
    info.stats.expired_total = c(Counter::kExpired);
    info.stats.purged_total = c(Counter::kPurged);
    info.stats.deleted_total = c(Counter::kDeleted);
    info.stats.moved_total = c(Counter::kMoved);
    report.queues.push_back(std::move(info));
  }
  std::sort(report.queues.begin(), report.queues.end(),
            [](const QueueInfo& a, const QueueInfo& b) { return a.name < b.name; });
  for (auto* h : (*store)->families()) {
    FamilyReport f;
    f.name = h->GetName();
    (*store)->db()->GetIntProperty(h, "rocksdb.live-sst-files-size", &f.live_sst_bytes);
    (*store)->db()->GetIntProperty(h, "rocksdb.total-sst-files-size", &f.total_sst_bytes);
    (*store)->db()->GetIntProperty(h, "rocksdb.estimate-num-keys", &f.keys_estimate);
    rocksdb::TablePropertiesCollection tables;
    if ((*store)->db()->GetPropertiesOfAllTables(h, &tables).ok()) {
      for (auto& [file, props] : tables) {
        f.tombstones_estimate += props->num_deletions + props->num_range_deletions;
      }
    }
    report.families.push_back(std::move(f));
  }
  std::error_code ec;
  for (auto& entry : std::filesystem::recursive_directory_iterator(data_dir, ec)) {
    if (entry.is_regular_file(ec)) report.disk_bytes += entry.file_size(ec);
  }
  return report;
}

absl::StatusOr<VerifyReport> VerifyStore(const std::string& data_dir) {
  auto opened = ReadOnlyStore::Open(data_dir);
  if (!opened.ok()) return opened.status();
  ReadOnlyStore& store = **opened;
  VerifyReport report;
  auto& problems = report.problems;
  auto queues = LoadQueues(store, &problems);
  report.queues = queues.size();

  uint64_t reserved = 0;
  std::string value;
  if (store.db()->Get({}, store.family(kDefault), kSeqReservedKey, &value).ok() &&
      value.size() == 8) {
    reserved = DecodeBigEndian64(value);
  }

  // Walk the messages and state families side by side: same keys, in the same order.
  std::map<uint64_t, uint64_t> counts;
  std::unique_ptr<rocksdb::Iterator> m(store.db()->NewIterator({}, store.family(kMessages)));
  std::unique_ptr<rocksdb::Iterator> st(store.db()->NewIterator({}, store.family(kState)));
  m->SeekToFirst();
  st->SeekToFirst();
  while (m->Valid() || st->Valid()) {
    int order = !m->Valid() ? 1 : !st->Valid() ? -1 : m->key().compare(st->key());
    std::string_view key = (order <= 0 ? m->key() : st->key()).ToStringView();
    auto parts = ParseMessageKey(key);
    if (!parts) {
      problems.push_back("a key of the wrong length in the messages or state family");
    } else {
      std::string name = MessageName(queues, parts->queue_id, parts->seq);
      if (order < 0) problems.push_back(Cat(name, " has a payload but no state record"));
      if (order > 0) problems.push_back(Cat(name, " has a state record but no payload"));
      if (order <= 0) {
        storage::MessageRecord r;
        if (!r.ParseFromArray(m->value().data(), static_cast<int>(m->value().size()))) {
          problems.push_back(Cat(name, ": payload record does not parse"));
        }
      }
      if (order >= 0) {
        storage::StateRecord r;
        if (!r.ParseFromArray(st->value().data(), static_cast<int>(st->value().size()))) {
          problems.push_back(Cat(name, ": state record does not parse"));
        }
      }
      if (!queues.contains(parts->queue_id)) {
        problems.push_back(Cat(name, " remains after its queue was deleted"));
      }
      if (parts->seq >= reserved) {
        problems.push_back(Cat(name, " has a sequence number that was never reserved"));
      }
      ++counts[parts->queue_id];
      ++report.messages;
    }
    if (order <= 0) m->Next();
    if (order >= 0) st->Next();
  }
  for (auto* iter : {m.get(), st.get()}) {
    if (!iter->status().ok()) problems.push_back(Cat("reading: ", iter->status().ToString()));
  }

  std::unique_ptr<rocksdb::Iterator> d(store.db()->NewIterator({}, store.family(kDedup)));
  for (d->SeekToFirst(); d->Valid(); d->Next()) {
    std::string_view key = d->key().ToStringView();
    storage::DedupRecord r;
    if (key.size() < 8 ||
        !r.ParseFromArray(d->value().data(), static_cast<int>(d->value().size()))) {
      problems.push_back("a dedup record does not parse");
    } else if (!queues.contains(DecodeBigEndian64(key))) {
      problems.push_back(
          Cat("a dedup id of deleted queue id ", DecodeBigEndian64(key), " remains"));
    }
  }

  for (auto& [id, q] : queues) {
    const auto& counters = q.counters;  // (clang 14 cannot capture a structured binding)
    auto c = [&](Counter x) { return counters[static_cast<int>(x)]; };
    int64_t expected = c(Counter::kEnqueued) - c(Counter::kAcked) - c(Counter::kDeadLettered) -
                       c(Counter::kExpired) - c(Counter::kPurged) - c(Counter::kDeleted) -
                       c(Counter::kMoved);
    int64_t held = static_cast<int64_t>(counts[id]);
    if (expected != held) {
      problems.push_back(Cat("queue \"", q.record.name(), "\": counters say ", expected,
                             " messages (enqueued ", c(Counter::kEnqueued), " - acked ",
                             c(Counter::kAcked), " - dead-lettered ", c(Counter::kDeadLettered),
                             " - expired ", c(Counter::kExpired), " - purged ", c(Counter::kPurged),
                             " - deleted ", c(Counter::kDeleted), " - moved ", c(Counter::kMoved),
                             ") but the store holds ", held));
    }
    if (!q.record.dead_letter_queue().empty()) {
      bool found = false;
      for (auto& [other_id, other] : queues)
        found |= other.record.name() == q.record.dead_letter_queue();
      if (!found) {
        problems.push_back(Cat("queue \"", q.record.name(), "\" dead-letters into \"",
                               q.record.dead_letter_queue(), "\", which does not exist"));
      }
    }
  }
  return report;
}

}  // namespace spool::engine
