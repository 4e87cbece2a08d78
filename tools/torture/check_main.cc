// spool-check: runs the torture checker over a saved history (spool-torture writes one to
// DIR/history.jsonl). Exit 0 when it passes, 1 on violations, 2 when the file is unreadable.
#include <cstdio>

#include "tools/torture/checker.h"

int main(int argc, char** argv) {
  if (argc != 2 || argv[1][0] == '-') {
    std::fprintf(stderr, "usage: spool-check HISTORY.jsonl\n");
    return 2;
  }
  std::vector<spool::torture::Event> history;
  std::string error;
  if (!spool::torture::ReadHistory(argv[1], &history, &error)) {
    std::fprintf(stderr, "spool-check: %s\n", error.c_str());
    return 2;
  }
  spool::torture::Report report = spool::torture::Check(history, {});
  std::printf("%s", report.Format(20).c_str());
  return report.ok() ? 0 : 1;
}
