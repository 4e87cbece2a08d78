// Start-up chores the benchmark servers (spool-append-server, spool-reply-paths) share: the stop
// signals are blocked before any thread starts so that sigwait in main takes them, and the port
// is written to --port-file atomically once serving (a reader never sees a partial file).
#ifndef SPOOL_TOOLS_BENCH_SERVE_H_
#define SPOOL_TOOLS_BENCH_SERVE_H_

#include <pthread.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace spool::bench {

// Blocks SIGTERM and SIGINT in the calling thread (and the threads it starts afterwards).
inline sigset_t BlockStopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

// Returns once SIGTERM or SIGINT arrives.
inline void WaitForStopSignal(const sigset_t& signals) {
  int sig = 0;
  sigwait(&signals, &sig);
}

// Writes port to path (if not empty) through a temporary file and a rename.
inline void WritePortFile(const std::string& path, int port) {
  if (path.empty()) return;
  std::string tmp = path + ".tmp";
  std::ofstream(tmp) << port << "\n";
  std::filesystem::rename(tmp, path);
}

}  // namespace spool::bench

#endif  // SPOOL_TOOLS_BENCH_SERVE_H_
