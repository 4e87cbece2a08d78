// Bearer tokens for spoold (--auth-file): which token may do what to which queues. Checked in
// the service layer from the call's "authorization: Bearer <token>" metadata, so it works over
// plaintext loopback as well as TLS (gRPC's AuthMetadataProcessor needs TLS).
//
// File format, one token per line, fields separated by white space, # starts a comment:
//   <token>  <permissions: produce,consume,admin>  <queues: names or prefixes ending in *>
#ifndef SPOOL_SERVER_AUTH_H_
#define SPOOL_SERVER_AUTH_H_

#include <grpcpp/server_context.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace spool::server {

enum Permission : uint8_t {
  kProduce = 1,  // Enqueue
  kConsume = 2,  // Lease, Ack, Nack, ExtendLease, Peek
  kAdmin = 4,    // CreateQueue, UpdateQueue, DeleteQueue, PurgeQueue, MoveMessages,
                 // DeleteMessage (and every read)
};

class Authorizer {
 public:
  struct Grant {
    std::array<unsigned char, 32> token_hash;  // SHA-256 of the token; the token is not kept
    uint8_t permissions = 0;
    std::vector<std::string> patterns;  // "name", "prefix*", or "*"
    bool Sees(std::string_view queue) const;
  };

  // INVALID_ARGUMENT "line N: ..." for the first line that does not parse.
  static absl::StatusOr<Authorizer> Parse(std::string_view text);
  static absl::StatusOr<Authorizer> Load(const std::string& path);

  // The caller's grant from its metadata: UNAUTHENTICATED when there is no bearer token or it
  // is not in the file. Every grant is compared (in constant time) whatever the token.
  absl::StatusOr<const Grant*> Identify(const grpc::CallbackServerContext* ctx) const;
  // The same from the value of an Authorization header ("Bearer <token>"; empty when absent);
  // `what` names where it should be sent in the error ("metadata", "header").
  absl::StatusOr<const Grant*> IdentifyHeader(std::string_view value, std::string_view what) const;

  // OK, or PERMISSION_DENIED naming what is missing.
  static absl::Status Check(const Grant& grant, Permission needed, std::string_view queue);

 private:
  std::vector<Grant> grants_;
};

}  // namespace spool::server

#endif  // SPOOL_SERVER_AUTH_H_
