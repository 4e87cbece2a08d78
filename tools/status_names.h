// The names of gRPC status codes as the gRPC spec spells them, for tools that print or record
// them (spool-bench, spool-torture).
#ifndef SPOOL_TOOLS_STATUS_NAMES_H_
#define SPOOL_TOOLS_STATUS_NAMES_H_

#include <grpcpp/support/status.h>

namespace spool::tools {

inline const char* StatusCodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  int i = static_cast<int>(code);
  return i >= 0 && i <= 16 ? kNames[i] : "?";
}

}  // namespace spool::tools

#endif  // SPOOL_TOOLS_STATUS_NAMES_H_
