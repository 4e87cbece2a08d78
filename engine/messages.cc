// Operators' message operations: Peek, MoveMessages (redrive), DeleteMessage, and the move of
// messages between queues that dead-lettering shares.
#include "engine/engine_impl.h"

namespace spool::engine::internal {

void EngineImpl::MoveLocked(Queue& from, Queue& to, const std::vector<uint64_t>& seqs, int64_t now,
                            MoveKind kind, std::vector<MovedMessage>* moved,
                            CommitPipeline::Done extra_done) {
  // The payload record is rewritten under the new key, so it is read here, under the lock.
  // Moves are rare (poison messages, operator redrives) and this keeps each one atomic.
  struct Move {
    uint64_t seq, new_seq;
    std::string new_key, record;
  };
  std::vector<Move> moves;
  for (uint64_t seq : seqs) {
    std::string value;
    rocksdb::Status s = db_->Get({}, messages_cf_, MessageKey(from.id, seq), &value);
    storage::MessageRecord record;
    if (!s.ok() || !record.ParseFromString(value)) {
      Log(Cat("cannot read message ", FormatMessageId(seq), " of queue ", from.name,
              " to move it: ", s.ok() ? "damaged record" : s.ToString()));
      continue;
    }
    record.set_enqueue_time_ms(now);
    if (kind == MoveKind::kDeadLetter) {
      record.set_dead_letter_source_queue(from.name);
      record.set_dead_letter_source_seq(seq);
    } else {
      record.clear_dead_letter_source_queue();
      record.clear_dead_letter_source_seq();
    }
    moves.push_back({seq, 0, "", record.SerializeAsString()});
  }
  std::optional<uint64_t> reservation;
  uint64_t first = AllocSeqsLocked(moves.size(), &reservation);
  Activations activate;
  std::vector<std::string> states;
  for (size_t k = 0; k < moves.size(); ++k) {
    Move& mv = moves[k];
    mv.new_seq = first + k;
    mv.new_key = MessageKey(to.id, mv.new_seq);
    const MsgState& old = from.messages.at(mv.seq);
    IndexRemoveLocked(from, mv.seq, old);
    MsgState m;
    m.enqueue_time = now;
    m.visible_at = now;
    m.size = old.size;
    m.pending = true;
    ForgetLocked(from, mv.seq);
    from.messages.erase(mv.seq);
    to.messages.emplace(mv.new_seq, m);
    IndexAddLocked(to, mv.new_seq, m);
    activate.emplace_back(to.id, mv.new_seq);
    states.push_back(ToRecord(m).SerializeAsString());
    if (moved) moved->push_back({FormatMessageId(mv.seq), FormatMessageId(mv.new_seq)});
  }
  int64_t n = static_cast<int64_t>(moves.size());
  Counter out = kind == MoveKind::kDeadLetter ? Counter::kDeadLettered : Counter::kMoved;
  from.counters[static_cast<int>(out)] += n;
  to.counters[static_cast<int>(Counter::kEnqueued)] += n;
  pipeline_->Submit(
      [&](CommitPipeline::Group& g) {
        rocksdb::WriteBatch& b = g.batch();
        for (size_t k = 0; k < moves.size(); ++k) {
          std::string old_key = MessageKey(from.id, moves[k].seq);
          b.SingleDelete(messages_cf_, old_key);
          b.Delete(state_cf_, old_key);
          b.Put(messages_cf_, moves[k].new_key, moves[k].record);
          b.Put(state_cf_, moves[k].new_key, states[k]);
        }
        MergeCounter(g, from.id, out, n);
        MergeCounter(g, to.id, Counter::kEnqueued, n);
        if (reservation) {
          std::string v;
          AppendBigEndian64(&v, *reservation);
          b.Put(default_cf_, kSeqReservedKey, v);
        }
      },
      [this, activate = std::move(activate),
       extra_done = std::move(extra_done)](const absl::Status& s) {
        AfterCommit(s, activate, {});
        if (extra_done) extra_done(s);
      });
}

absl::StatusOr<PeekResult> EngineImpl::Peek(std::string_view queue, uint32_t max_messages,
                                            std::string_view start_after) {
  if (auto s = ValidatePeek(max_messages, start_after); !s.ok()) return s;
  if (max_messages == 0) max_messages = Limits::kDefaultPeek;
  PeekResult result;
  uint64_t queue_id;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return Closing();
    auto found = FindLocked(queue);
    if (!found.ok()) return found.status();
    Queue& q = **found;
    queue_id = q.id;
    int64_t now = NowLocked();
    auto it = start_after.empty() ? q.messages.begin()
                                  : q.messages.upper_bound(*ParseMessageId(start_after));
    uint64_t bytes = 0;
    for (; it != q.messages.end(); ++it) {
      const MsgState& m = it->second;
      if (m.pending) continue;
      if (result.messages.size() == max_messages ||
          (!result.messages.empty() && bytes + m.size > kMaxResponseBytes)) {
        result.next_start_after = result.messages.back().message_id;
        break;
      }
      bytes += m.size;
      PeekedMessage& out = result.messages.emplace_back();
      out.message_id = FormatMessageId(it->first);
      out.state = m.visible_at <= now ? MessageState::kReady
                  : m.leased          ? MessageState::kLeased
                                      : MessageState::kDelayed;
      out.delivery_count = m.delivery_count;
      out.enqueue_time_ms = m.enqueue_time;
      out.visible_time_ms = m.visible_at;
    }
  }
  size_t n = result.messages.size();
  std::vector<std::string> keys(n);
  std::vector<rocksdb::Slice> slices(n);
  for (size_t k = 0; k < n; ++k) {
    keys[k] = MessageKey(queue_id, *ParseMessageId(result.messages[k].message_id));
    slices[k] = keys[k];
  }
  std::vector<PeekedMessage> kept;
  kept.reserve(n);
  absl::ReaderMutexLock lock(&db_mu_);
  if (db_closed_) return Closing();
  std::vector<rocksdb::PinnableSlice> values(n);
  std::vector<rocksdb::Status> statuses(n);
  db_->MultiGet({}, messages_cf_, n, slices.data(), values.data(), statuses.data());
  storage::MessageRecord record;
  for (size_t k = 0; k < n; ++k) {
    if (statuses[k].IsNotFound()) continue;  // removed since we looked
    if (!statuses[k].ok()) return FromRocks(statuses[k], "reading a message");
    if (!record.ParseFromArray(values[k].data(), static_cast<int>(values[k].size()))) {
      return absl::DataLossError("a stored message record is damaged");
    }
    PeekedMessage& out = result.messages[k];
    out.payload = std::move(*record.mutable_payload());
    for (const auto& a : record.attributes()) out.attributes[a.key()] = a.value();
    out.dead_letter_source_queue = record.dead_letter_source_queue();
    if (record.dead_letter_source_seq() != 0) {
      out.dead_letter_source_id = FormatMessageId(record.dead_letter_source_seq());
    }
    kept.push_back(std::move(out));
  }
  result.messages = std::move(kept);
  return result;
}

void EngineImpl::MoveMessages(std::string source, std::string destination, uint32_t max_messages,
                              Callback<std::vector<MovedMessage>> done) {
  absl::Status error = ValidateMove(source, destination, max_messages);
  if (error.ok()) {
    absl::MutexLock lock(&mu_);
    error = MoveMessagesLocked(source, destination, max_messages, done);
  }
  if (!error.ok()) done(error);
}

absl::Status EngineImpl::MoveMessagesLocked(const std::string& source,
                                            const std::string& destination, uint32_t max,
                                            Callback<std::vector<MovedMessage>>& done) {
  if (closed_) return Closing();
  auto from = FindLocked(source);
  if (!from.ok()) return from.status();
  auto to = FindLocked(destination);
  if (!to.ok()) return to.status();
  if (max == 0) max = Limits::kDefaultPeek;
  int64_t now = NowLocked();
  std::vector<uint64_t> seqs;
  for (auto it = (*from)->index.begin();
       it != (*from)->index.end() && it->first <= now && seqs.size() < max; ++it) {
    if (!(*from)->messages.at(it->second).pending) seqs.push_back(it->second);
  }
  uint64_t depth = (*to)->config.max_depth;
  if (depth > 0 && (*to)->messages.size() + seqs.size() > depth) {
    return absl::ResourceExhaustedError(Cat("queue \"", destination, "\" is full: max_depth is ",
                                            depth, " and ", (*to)->messages.size(),
                                            " messages are stored"));
  }
  auto moved = std::make_shared<std::vector<MovedMessage>>();
  MoveLocked(**from, **to, seqs, now, MoveKind::kRedrive, moved.get(),
             [moved, done = std::move(done)](const absl::Status& s) {
               if (!s.ok()) return done(s);
               done(std::move(*moved));
             });
  return absl::OkStatus();
}

void EngineImpl::DeleteMessage(std::string queue, std::string message_id, Callback<bool> done) {
  absl::Status error;
  {
    absl::MutexLock lock(&mu_);
    error = DeleteMessageLocked(queue, message_id, done);
  }
  if (!error.ok()) done(error);
}

absl::Status EngineImpl::DeleteMessageLocked(const std::string& queue, const std::string& id,
                                             Callback<bool>& done) {
  if (closed_) return Closing();
  auto found = FindLocked(queue);
  if (!found.ok()) return found.status();
  Queue& q = **found;
  std::optional<uint64_t> seq = ParseMessageId(id);
  if (!seq)
    return absl::InvalidArgumentError("message_id: is not a message id (16 lower-case hex digits)");
  auto it = q.messages.find(*seq);
  if (it == q.messages.end() || it->second.pending) {
    return absl::NotFoundError(Cat("message ", id, " not found in queue \"", queue, "\""));
  }
  ForgetLocked(q, *seq);
  IndexRemoveLocked(q, *seq, it->second);
  q.messages.erase(it);
  q.counters[static_cast<int>(Counter::kDeleted)] += 1;
  pipeline_->Submit(
      [&](CommitPipeline::Group& g) {
        rocksdb::WriteBatch& b = g.batch();
        std::string key = MessageKey(q.id, *seq);
        b.SingleDelete(messages_cf_, key);
        b.Delete(state_cf_, key);
        MergeCounter(g, q.id, Counter::kDeleted, 1);
      },
      [done = std::move(done)](const absl::Status& s) {
        if (!s.ok()) return done(s);
        done(true);
      });
  return absl::OkStatus();
}

}  // namespace spool::engine::internal
