// Conversions between spool.v1 messages and engine values, and the one place engine errors
// become gRPC statuses. Proto durations are taken at millisecond precision (sub-millisecond
// parts are dropped); a malformed Duration is INVALID_ARGUMENT naming its field.
#ifndef SPOOL_SERVER_CONVERT_H_
#define SPOOL_SERVER_CONVERT_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/types.h"
#include "spool/v1/queue.pb.h"

namespace spool::server {

grpc::Status ToGrpc(const absl::Status& s);

// Milliseconds, or INVALID_ARGUMENT naming field for an ill-formed Duration (nanos out of
// range or of the other sign than seconds). Values too large for milliseconds saturate, so
// range checks report them as out of range.
absl::StatusOr<int64_t> FromDuration(const google::protobuf::Duration& d, std::string_view field);
void ToDuration(int64_t ms, google::protobuf::Duration* d);
void ToTimestamp(int64_t ms, google::protobuf::Timestamp* t);

absl::StatusOr<engine::QueueConfig> FromProto(const v1::QueueConfig& in);
void ToProto(const engine::QueueInfo& in, v1::Queue* out);

absl::StatusOr<std::vector<engine::EnqueueEntry>> FromProto(
    google::protobuf::RepeatedPtrField<v1::EnqueueEntry>* in);
absl::StatusOr<engine::LeaseRequest> FromProto(const v1::LeaseRequest& in);
void ToProto(engine::LeasedMessage&& in, v1::LeasedMessage* out);
void ToProto(engine::PeekedMessage&& in, v1::PeekedMessage* out);
void ToProto(const std::string& receipt, const engine::ReceiptOutcome& in, v1::ReceiptOutcome* out);

}  // namespace spool::server

#endif  // SPOOL_SERVER_CONVERT_H_
