// Helpers shared by the tests: temporary directories that clean up after themselves.
#ifndef SPOOL_TESTS_TEST_UTIL_H_
#define SPOOL_TESTS_TEST_UTIL_H_

#include <stdlib.h>

#include <filesystem>
#include <string>

namespace spool::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "spool-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace spool::testing

#endif  // SPOOL_TESTS_TEST_UTIL_H_
