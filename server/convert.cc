#include "server/convert.h"

#include <limits>

#include "engine/strings.h"

namespace spool::server {

using engine::Cat;

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  // absl::StatusCode and grpc::StatusCode share their numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

absl::StatusOr<int64_t> FromDuration(const google::protobuf::Duration& d, std::string_view field) {
  int64_t seconds = d.seconds();
  int32_t nanos = d.nanos();
  if (nanos <= -1'000'000'000 || nanos >= 1'000'000'000 || (seconds > 0 && nanos < 0) ||
      (seconds < 0 && nanos > 0)) {
    return absl::InvalidArgumentError(Cat(field, ": is not a valid duration"));
  }
  constexpr int64_t kLimit = std::numeric_limits<int64_t>::max() / 1000 - 1;
  if (seconds > kLimit) return std::numeric_limits<int64_t>::max();
  if (seconds < -kLimit) return std::numeric_limits<int64_t>::min();
  return seconds * 1000 + nanos / 1'000'000;
}

void ToDuration(int64_t ms, google::protobuf::Duration* d) {
  d->set_seconds(ms / 1000);
  d->set_nanos(static_cast<int32_t>((ms % 1000) * 1'000'000));
}

void ToTimestamp(int64_t ms, google::protobuf::Timestamp* t) {
  int64_t seconds = ms / 1000, rem = ms % 1000;
  if (rem < 0) {
    --seconds;
    rem += 1000;
  }
  t->set_seconds(seconds);
  t->set_nanos(static_cast<int32_t>(rem * 1'000'000));
}

namespace {

absl::Status OptionalDuration(bool has, const google::protobuf::Duration& d, std::string_view field,
                              std::optional<int64_t>* out) {
  if (!has) return absl::OkStatus();
  auto ms = FromDuration(d, field);
  if (!ms.ok()) return ms.status();
  *out = *ms;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<engine::QueueConfig> FromProto(const v1::QueueConfig& in) {
  engine::QueueConfig c;
  absl::Status s;
  if (s = OptionalDuration(in.has_visibility_timeout(), in.visibility_timeout(),
                           "config.visibility_timeout", &c.visibility_timeout_ms);
      !s.ok()) {
    return s;
  }
  if (s = OptionalDuration(in.has_retention(), in.retention(), "config.retention", &c.retention_ms);
      !s.ok()) {
    return s;
  }
  if (s = OptionalDuration(in.has_delay(), in.delay(), "config.delay", &c.delay_ms); !s.ok()) {
    return s;
  }
  if (s = OptionalDuration(in.has_dedup_window(), in.dedup_window(), "config.dedup_window",
                           &c.dedup_window_ms);
      !s.ok()) {
    return s;
  }
  c.max_deliveries = in.max_deliveries();
  c.dead_letter_queue = in.dead_letter_queue();
  c.max_payload_bytes = in.max_payload_bytes();
  c.max_depth = in.max_depth();
  return c;
}

void ToProto(const engine::QueueInfo& in, v1::Queue* out) {
  out->set_name(in.name);
  v1::QueueConfig* c = out->mutable_config();
  ToDuration(in.config.visibility_timeout_ms.value_or(0), c->mutable_visibility_timeout());
  c->set_max_deliveries(in.config.max_deliveries);
  c->set_dead_letter_queue(in.config.dead_letter_queue);
  ToDuration(in.config.retention_ms.value_or(0), c->mutable_retention());
  ToDuration(in.config.delay_ms.value_or(0), c->mutable_delay());
  c->set_max_payload_bytes(in.config.max_payload_bytes);
  c->set_max_depth(in.config.max_depth);
  ToDuration(in.config.dedup_window_ms.value_or(0), c->mutable_dedup_window());
  v1::QueueStats* s = out->mutable_stats();
  s->set_ready(in.stats.ready);
  s->set_leased(in.stats.leased);
  s->set_delayed(in.stats.delayed);
  s->set_total(in.stats.total);
  ToDuration(in.stats.oldest_ready_age_ms, s->mutable_oldest_ready_age());
  s->set_enqueued_total(in.stats.enqueued_total);
  s->set_acked_total(in.stats.acked_total);
  s->set_delivered_total(in.stats.delivered_total);
  s->set_dead_lettered_total(in.stats.dead_lettered_total);
  s->set_expired_total(in.stats.expired_total);
  s->set_purged_total(in.stats.purged_total);
  s->set_deleted_total(in.stats.deleted_total);
  s->set_moved_total(in.stats.moved_total);
  s->set_nacked_total(in.stats.nacked_total);
  ToTimestamp(in.create_time_ms, out->mutable_create_time());
}

absl::StatusOr<std::vector<engine::EnqueueEntry>> FromProto(
    google::protobuf::RepeatedPtrField<v1::EnqueueEntry>* in) {
  std::vector<engine::EnqueueEntry> out;
  out.reserve(in->size());
  for (int i = 0; i < in->size(); ++i) {
    v1::EnqueueEntry& e = (*in)[i];
    engine::EnqueueEntry& x = out.emplace_back();
    x.payload = std::move(*e.mutable_payload());
    x.attributes.insert(e.attributes().begin(), e.attributes().end());
    x.dedup_id = e.dedup_id();
    if (auto s =
            OptionalDuration(e.has_delay(), e.delay(), Cat("messages[", i, "].delay"), &x.delay_ms);
        !s.ok()) {
      return s;
    }
  }
  return out;
}

absl::StatusOr<engine::LeaseRequest> FromProto(const v1::LeaseRequest& in) {
  engine::LeaseRequest r;
  r.queue = in.queue();
  r.max_messages = in.max_messages();
  if (auto s = OptionalDuration(in.has_visibility_timeout(), in.visibility_timeout(),
                                "visibility_timeout", &r.visibility_timeout_ms);
      !s.ok()) {
    return s;
  }
  if (in.has_wait_time()) {
    auto w = FromDuration(in.wait_time(), "wait_time");
    if (!w.ok()) return w.status();
    r.wait_ms = *w;
  }
  return r;
}

void ToProto(engine::LeasedMessage&& in, v1::LeasedMessage* out) {
  out->set_message_id(std::move(in.message_id));
  out->set_payload(std::move(in.payload));
  out->mutable_attributes()->insert(in.attributes.begin(), in.attributes.end());
  out->set_receipt(std::move(in.receipt));
  out->set_delivery_count(in.delivery_count);
  ToTimestamp(in.enqueue_time_ms, out->mutable_enqueue_time());
  ToTimestamp(in.lease_deadline_ms, out->mutable_lease_deadline());
}

void ToProto(engine::PeekedMessage&& in, v1::PeekedMessage* out) {
  out->set_message_id(std::move(in.message_id));
  out->set_payload(std::move(in.payload));
  out->mutable_attributes()->insert(in.attributes.begin(), in.attributes.end());
  out->set_state(static_cast<v1::MessageState>(in.state));
  out->set_delivery_count(in.delivery_count);
  ToTimestamp(in.enqueue_time_ms, out->mutable_enqueue_time());
  ToTimestamp(in.visible_time_ms, out->mutable_visible_time());
  out->set_dead_letter_source_queue(std::move(in.dead_letter_source_queue));
  out->set_dead_letter_source_id(std::move(in.dead_letter_source_id));
}

void ToProto(const std::string& receipt, const engine::ReceiptOutcome& in,
             v1::ReceiptOutcome* out) {
  out->set_receipt(receipt);
  out->set_outcome(static_cast<v1::Outcome>(in.outcome));
  if (in.outcome == engine::Outcome::kOk && in.lease_deadline_ms != 0) {
    ToTimestamp(in.lease_deadline_ms, out->mutable_lease_deadline());
  }
}

}  // namespace spool::server
