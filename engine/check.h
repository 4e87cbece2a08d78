// SPOOL_CHECK guards invariants that protect stored data. It stays on in release builds: going
// on with a broken invariant risks losing messages, stopping does not. Never use it on user
// input, which gets INVALID_ARGUMENT instead.
#ifndef SPOOL_ENGINE_CHECK_H_
#define SPOOL_ENGINE_CHECK_H_

namespace spool::engine::internal {
[[noreturn]] void CheckFailed(const char* file, int line, const char* cond, const char* msg);
}  // namespace spool::engine::internal

#define SPOOL_CHECK(cond, msg)                                                  \
  do {                                                                          \
    if (!(cond)) [[unlikely]]                                                   \
      ::spool::engine::internal::CheckFailed(__FILE__, __LINE__, #cond, (msg)); \
  } while (0)

#endif  // SPOOL_ENGINE_CHECK_H_
