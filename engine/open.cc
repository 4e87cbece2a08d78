// Opening the store (recovery: loading every message state into the lease index), closing it,
// and the figures read from it.
#include "engine/engine_impl.h"

namespace spool::engine::internal {

namespace {

// Bytes of write-ahead log in a store's directory: what opening it will replay (0 for a new
// store, and for what cannot be read, which DB::Open will report).
uint64_t LogBytes(const std::string& db_path) {
  uint64_t bytes = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(db_path, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->path().extension() != ".log") continue;
    std::error_code size_ec;
    uintmax_t size = it->file_size(size_ec);
    if (!size_ec) bytes += size;
  }
  return bytes;
}

// One message's state, as read from the state family at open.
struct LoadedState {
  uint64_t queue_id;
  uint64_t seq;
  MsgState m;
};

// Reads and parses every message state on a thread of its own and hands them to `take` on the
// calling thread, in key order, a chunk at a time. Reading the store and building the
// in-memory maps from it are most of a restart's time (10 million messages stored: about two
// thirds and one third of it); this way they overlap. At most kMaxChunks chunks wait at once.
absl::Status ScanStates(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* family,
                        absl::FunctionRef<void(const std::vector<LoadedState>&)> take) {
  constexpr size_t kChunk = 4096;
  constexpr size_t kMaxChunks = 8;
  struct Shared {
    absl::Mutex mu;
    std::deque<std::vector<LoadedState>> chunks ABSL_GUARDED_BY(mu);
    bool done ABSL_GUARDED_BY(mu) = false;
    absl::Status status ABSL_GUARDED_BY(mu);
  } shared;
  std::thread reader([db, family, &shared] {
    pthread_setname_np(pthread_self(), "spool-load");
    // A scan reads every block once: filling the block cache with them would only evict.
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;
    ro.readahead_size = 2 << 20;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro, family));
    storage::StateRecord r;
    std::vector<LoadedState> chunk;
    chunk.reserve(kChunk);
    absl::Status status;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      auto parts = ParseMessageKey(it->key().ToStringView());
      if (!parts || !r.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        status = absl::DataLossError("a message state record in the store is damaged");
        break;
      }
      chunk.push_back({parts->queue_id, parts->seq, FromRecord(r)});
      if (chunk.size() == kChunk) {
        absl::MutexLock lock(&shared.mu);
        shared.mu.Await(absl::Condition(
            +[](Shared* s)
                 ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) { return s->chunks.size() < kMaxChunks; },
            &shared));
        shared.chunks.push_back(std::move(chunk));
        chunk = {};
        chunk.reserve(kChunk);
      }
    }
    if (status.ok() && !it->status().ok())
      status = FromRocks(it->status(), "loading message states");
    absl::MutexLock lock(&shared.mu);
    if (!chunk.empty()) shared.chunks.push_back(std::move(chunk));
    shared.status = status;
    shared.done = true;
  });
  for (;;) {
    std::vector<LoadedState> chunk;
    {
      absl::MutexLock lock(&shared.mu);
      shared.mu.Await(absl::Condition(
          +[](Shared* s)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) { return s->done || !s->chunks.empty(); },
          &shared));
      if (shared.chunks.empty()) break;
      chunk = std::move(shared.chunks.front());
      shared.chunks.pop_front();
    }
    take(chunk);
  }
  reader.join();
  absl::MutexLock lock(&shared.mu);
  return shared.status;
}

}  // namespace

void EngineImpl::Log(const std::string& line) {
  if (options_.log) {
    options_.log(line);
  } else {
    std::fprintf(stderr, "spool: %s\n", line.c_str());
  }
}

// ---------------------------------------------------------------------------------------------
// Opening and closing

absl::Status EngineImpl::OpenStore() {
  absl::StatusOr<int> dir_lock = LockDataDir(options_.data_dir, /*create=*/true);
  if (!dir_lock.ok()) return dir_lock.status();
  lock_fd_ = *dir_lock;
  rocksdb::DB* raw = nullptr;
  std::string db_path = StorePath(options_.data_dir);
  rocksdb::DBOptions db_options = StoreOptions();
  if (options_.test.faults) {
    env_ = rocksdb::NewCompositeEnv(
        NewFaultFileSystem(rocksdb::FileSystem::Default(), options_.test.faults));
    db_options.env = env_.get();
    // RocksDB retries a failed background write once a second; after an injected fault (a
    // simulated power cut) that only makes closing wait. The engine's own error is sticky
    // anyway (commit_pipeline.h).
    db_options.max_bgerror_resume_count = 0;
  }
  // After a crash during heavy writing (a large log left to replay), compactions wait until
  // the messages are loaded: those owed would otherwise take one of the machine's cores from
  // the scan below (10.8 million stored and a 290 MB log to replay after a kill -9, four runs
  // each: spoold's CPU by SERVING 7.0-10.0 s -> 4.7-5.2 s, time to SERVING 4.2-6.0 s ->
  // 3.9-4.2 s). Nothing writes to the store until then but the small first-open batch.
  const uint64_t log_bytes = LogBytes(db_path);
  const bool defer_compactions = log_bytes >= options_.defer_compactions_log_bytes;
  std::vector<rocksdb::ColumnFamilyDescriptor> families = StoreFamilies();
  for (auto& f : families) f.options.disable_auto_compactions = defer_compactions;
  rocksdb::Status s = rocksdb::DB::Open(db_options, db_path, families, &handles_, &raw);
  if (!s.ok()) {
    if (s.IsCorruption()) {
      return absl::DataLossError(Cat(
          "the store in ", db_path, " is damaged and opening it would lose data (", s.ToString(),
          "); spoold will not start on it. Keep a copy of the directory; see README "
          "\"Recovering a damaged store\""));
    }
    return FromRocks(s, Cat("opening the store in ", db_path));
  }
  db_.reset(raw);
  default_cf_ = handles_[0];
  messages_cf_ = handles_[1];
  state_cf_ = handles_[2];
  dedup_cf_ = handles_[3];

  // Format version and receipt secret; a new store gets both in one synced write.
  std::string value;
  rocksdb::WriteBatch init;
  s = db_->Get({}, default_cf_, kFormatVersionKey, &value);
  if (s.IsNotFound()) {
    std::string v;
    AppendBigEndian64(&v, kFormatVersion);
    init.Put(default_cf_, kFormatVersionKey, v);
  } else if (!s.ok()) {
    return FromRocks(s, "reading the format version");
  } else if (value.size() != 8 || DecodeBigEndian64(value) != kFormatVersion) {
    return absl::FailedPreconditionError(
        Cat("the store in ", db_path, " has an unknown format version"));
  }
  s = db_->Get({}, default_cf_, kSecretKey, &value);
  if (s.IsNotFound()) {
    value = NewReceiptSecret();
    init.Put(default_cf_, kSecretKey, value);
  } else if (!s.ok()) {
    return FromRocks(s, "reading the receipt secret");
  }
  if (value.size() != ReceiptSigner::kSecretBytes) {
    return absl::DataLossError("the receipt secret in the store is damaged");
  }
  signer_ = std::make_unique<ReceiptSigner>(value);
  if (init.Count() > 0) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    if (auto st = FromRocks(db_->Write(wo, &init), "initializing the store"); !st.ok()) return st;
  }

  absl::MutexLock lock(&mu_);
  int64_t now = NowLocked();
  for (auto [key, target] :
       {std::pair{kNextQueueIdKey, &next_queue_id_}, std::pair{kSeqReservedKey, &seq_reserved_}}) {
    s = db_->Get({}, default_cf_, key, &value);
    if (s.ok() && value.size() == 8) {
      *target = DecodeBigEndian64(value);
    } else if (!s.IsNotFound()) {
      return absl::DataLossError(Cat("cannot read ", key, ": ", s.ToString()));
    }
  }
  next_seq_ = seq_reserved_;

  // Queues and their counters.
  {
    std::string lo(1, kQueuePrefix), hi(1, kQueuePrefix + 1);
    rocksdb::Slice lo_s(lo), hi_s(hi);
    rocksdb::ReadOptions ro;
    ro.iterate_lower_bound = &lo_s;
    ro.iterate_upper_bound = &hi_s;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, default_cf_));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      storage::QueueRecord r;
      if (!r.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        return absl::DataLossError("a queue record in the store is damaged");
      }
      auto q = std::make_unique<Queue>();
      q->id = r.queue_id();
      q->name = r.name();
      q->config = ConfigFromRecord(r);
      q->create_time_ms = r.create_time_ms();
      q->split_at = now;
      by_name_[q->name] = q.get();
      queues_[q->id] = std::move(q);
    }
    if (!it->status().ok()) return FromRocks(it->status(), "loading queues");
  }
  {
    std::string lo(1, kCounterPrefix), hi(1, kCounterPrefix + 1);
    rocksdb::Slice lo_s(lo), hi_s(hi);
    rocksdb::ReadOptions ro;
    ro.iterate_lower_bound = &lo_s;
    ro.iterate_upper_bound = &hi_s;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, default_cf_));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string_view key = it->key().ToStringView();
      auto v = DecodeInt64(it->value().ToStringView());
      if (key.size() != 10 || !v) return absl::DataLossError("a counter in the store is damaged");
      Queue* q = FindByIdLocked(DecodeBigEndian64(key.substr(1)));
      uint8_t c = static_cast<uint8_t>(key[9]);
      if (q != nullptr && c < kCounterCount) q->counters[c] = *v;
    }
    if (!it->status().ok()) return FromRocks(it->status(), "loading counters");
  }

  // Every message's state: rebuilds the messages and the lease index of every queue.
  uint64_t loaded = 0, orphans = 0;
  Queue* q = nullptr;
  absl::Status scanned =
      ScanStates(db_.get(), state_cf_, [&](const std::vector<LoadedState>& chunk) {
        mu_.AssertHeld();  // held by this thread, which runs `take`
        for (const LoadedState& state : chunk) {
          if (q == nullptr || q->id != state.queue_id) q = FindByIdLocked(state.queue_id);
          if (q == nullptr) {
            ++orphans;
            continue;
          }
          SPOOL_CHECK(state.seq < seq_reserved_,
                      "a stored message has an unreserved sequence number");
          last_now_ = std::max(last_now_, state.m.enqueue_time);
          q->messages.emplace_hint(q->messages.end(), state.seq, state.m);
          // Scanned by sequence number, a backlog that was never leased comes in index order
          // too (enqueue times do not decrease): placed after the last entry, it costs no
          // search of the tree, which was a fifth of the restart with 10 million messages
          // stored. Entries out of that order fall back to a search.
          IndexAddLocked(*q, state.seq, state.m, q->index.end());
          ++loaded;
        }
      });
  if (!scanned.ok()) return scanned;
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, dedup_cf_));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string_view key = it->key().ToStringView();
      storage::DedupRecord r;
      if (key.size() < 8 ||
          !r.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        return absl::DataLossError("a dedup record in the store is damaged");
      }
      Queue* q = FindByIdLocked(DecodeBigEndian64(key));
      if (q == nullptr) continue;
      std::string id(key.substr(8));
      q->dedup[id] = {r.seq(), r.expire_at_ms()};
      q->dedup_order.emplace_back(r.expire_at_ms(), std::move(id));
    }
    if (!it->status().ok()) return FromRocks(it->status(), "loading dedup ids");
    for (auto& [id, q] : queues_) {
      std::sort(q->dedup_order.begin(), q->dedup_order.end());
    }
  }
  pipeline_ = std::make_unique<CommitPipeline>(
      db_.get(),
      options_.durability == Durability::kSync &&
          options_.test.mutation != Mutation::kReplyBeforeFsync,
      default_cf_, options_.test.at_point, options_.on_commit_group,
      [clock = clock_] { return clock->SteadyMicros(); });
  if (defer_compactions) {
    // Unlike SetOptions, this also schedules the compactions now owed.
    s = db_->EnableAutoCompaction(handles_);
    if (!s.ok()) return FromRocks(s, "starting compactions");
  }
  CheckClockAtOpenLocked();
  Log(Cat("opened ", options_.data_dir, ": ", queues_.size(), " queues, ", loaded, " messages",
          orphans ? Cat(", ", orphans, " orphaned states") : "",
          defer_compactions ? Cat(", ", log_bytes >> 20, " MiB of log replayed") : "",
          ", durability ", options_.durability == Durability::kSync ? "sync" : "async"));
  return absl::OkStatus();
}

void EngineImpl::StartBackground() {
  if (options_.background_thread) {
    bg_thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "spool-timers");
      BackgroundLoop();
    });
  }
}

void EngineImpl::Close() {
  std::vector<std::shared_ptr<LeaseWait>> waiting;
  std::vector<std::shared_ptr<Subscription>> subscriptions;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    closed_ = true;
    int64_t now = NowLocked();
    for (auto& [id, q] : queues_) {
      for (auto& w : q->waiters) {
        if (w->state == LeaseWait::State::kWaiting && w->sub == nullptr) {
          w->state = LeaseWait::State::kDone;
          waiting.push_back(w);
        }
      }
      // Subscriptions end here, and what they hold is visible again at the next open
      // rather than after its lease: written below, before the pipeline stops.
      std::vector<std::pair<uint64_t, std::string>> released;
      for (auto& sub : q->subscriptions) {
        ReleaseLocked(*q, *sub, now, &released);
        subscriptions.push_back(std::move(sub));
      }
      q->subscriptions.clear();
      q->waiters.clear();
      if (!released.empty() && pipeline_) {
        uint64_t queue_id = q->id;  // clang 14 cannot capture a structured binding
        pipeline_->Submit(
            [&](CommitPipeline::Group& g) {
              for (auto& [seq, state] : released) {
                g.batch().Put(state_cf_, MessageKey(queue_id, seq), state);
              }
            },
            [](const absl::Status&) {});
      }
    }
    num_waiters_ = 0;
  }
  for (auto& w : waiting) w->done(std::vector<LeasedMessage>{});
  {
    absl::MutexLock lock(&bg_mu_);
    bg_stop_ = true;
    bg_cv_.Signal();
  }
  if (bg_thread_.joinable()) bg_thread_.join();
  if (pipeline_) pipeline_->Stop();
  // Only now: the releases above are durable.
  for (auto& sub : subscriptions) {
    if (!sub->quiet.exchange(true)) sub->callbacks.ended(Closing());
  }
  absl::MutexLock db_lock(&db_mu_);
  db_closed_ = true;
  // After a simulated power cut (TestHooks) there is nothing to write out and no point trying.
  bool power_off = options_.test.faults && options_.test.faults->crashed();
  if (db_) {
    // A clean stop flushes the memtables, so the next open need not replay the log.
    rocksdb::Status s =
        power_off ? rocksdb::Status::OK() : db_->Flush(rocksdb::FlushOptions(), handles_);
    if (!s.ok()) {
      Log(Cat("flush at close failed (the log will be replayed at the next open): ", s.ToString()));
    }
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
    handles_.clear();
    db_->Close();
    db_.reset();
  }
  if (lock_fd_ >= 0) {
    ::close(lock_fd_);  // releases the flock
    lock_fd_ = -1;
  }
}

RuntimeStats EngineImpl::Runtime() {
  RuntimeStats r;
  {
    absl::MutexLock lock(&mu_);
    r.lease_waiters = num_waiters_;
    r.subscriptions = num_subscriptions_;
    r.subscribed_messages = num_held_;
  }
  absl::ReaderMutexLock db_lock(&db_mu_);
  if (db_closed_ || !db_) return r;
  for (auto* h : handles_) {
    uint64_t v = 0;
    if (db_->GetIntProperty(h, rocksdb::DB::Properties::kLiveSstFilesSize, &v)) {
      r.live_sst_bytes += v;
    }
    if (db_->GetIntProperty(h, rocksdb::DB::Properties::kTotalSstFilesSize, &v)) {
      r.total_sst_bytes += v;
    }
    if (db_->GetIntProperty(h, rocksdb::DB::Properties::kCurSizeAllMemTables, &v)) {
      r.memtable_bytes += v;
    }
  }
  rocksdb::VectorLogPtr wals;
  if (db_->GetSortedWalFiles(wals).ok()) {
    for (const auto& w : wals) r.wal_bytes += w->SizeFileBytes();
  }
  return r;
}

absl::Status EngineImpl::Health() {
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return Closing();
  }
  return pipeline_->error();
}

}  // namespace spool::engine::internal

namespace spool::engine {

using internal::EngineImpl;

absl::StatusOr<std::unique_ptr<Engine>> Engine::Open(const Options& options,
                                                     std::shared_ptr<Clock> clock) {
  if (auto s = ValidateOptions(options); !s.ok()) return s;
  if (!clock) clock = SystemClock();
  auto engine = std::make_unique<EngineImpl>(options, std::move(clock));
  if (auto s = engine->OpenStore(); !s.ok()) return s;
  engine->StartBackground();
  return engine;
}

}  // namespace spool::engine
