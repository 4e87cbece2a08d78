// Runs the real spoold binary for process tests: start on a free loopback port (read from
// --port-file), kill -9, SIGTERM, restart on the same data directory.
#ifndef SPOOL_TESTS_PROCESS_SPOOLD_PROCESS_H_
#define SPOOL_TESTS_PROCESS_SPOOLD_PROCESS_H_

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace spool::testing {

inline std::string BinDir() {
  const char* dir = std::getenv("SPOOL_BIN_DIR");
  return dir ? dir : "build/bin";
}

class SpooldProcess {
 public:
  SpooldProcess(std::string data_dir, std::vector<std::string> extra = {})
      : data_dir_(std::move(data_dir)), extra_(std::move(extra)) {}

  // The next Start runs this spoold binary under this command (e.g. faketime) with these
  // variables set.
  void RunUnder(std::string binary, std::vector<std::string> prefix,
                std::vector<std::pair<std::string, std::string>> env) {
    binary_ = std::move(binary);
    prefix_ = std::move(prefix);
    env_ = std::move(env);
  }
  ~SpooldProcess() {
    if (pid_ > 0) Kill9();
  }

  // Starts spoold and waits until it serves; returns false if it exits or takes over 20 s.
  bool Start() {
    port_file_ = data_dir_ + ".port";
    std::filesystem::remove(port_file_);
    log_file_ = data_dir_ + ".log";
    std::vector<std::string> args = {binary_.empty() ? BinDir() + "/spoold" : binary_,
                                     "--listen",
                                     "127.0.0.1:0",
                                     "--data-dir",
                                     data_dir_,
                                     "--port-file",
                                     port_file_};
    args.insert(args.end(), extra_.begin(), extra_.end());
    args.insert(args.begin(), prefix_.begin(), prefix_.end());
    pid_ = Spawn(args, log_file_, env_);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      if (std::filesystem::exists(port_file_)) {
        std::ifstream(port_file_) >> port_;
        return port_ > 0;
      }
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  void Kill9() {
    ::kill(pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  // SIGTERM; returns the exit code, or -1 if it did not exit within `within`.
  int Terminate(std::chrono::milliseconds within) {
    ::kill(pid_, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < deadline) {
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string Log() const {
    std::ifstream in(log_file_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  // Runs a command to completion with output to log; returns its exit code (-1 on timeout).
  static int Run(const std::vector<std::string>& args, const std::string& log,
                 std::chrono::milliseconds within) {
    pid_t pid = Spawn(args, log);
    auto deadline = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < deadline) {
      int status;
      if (waitpid(pid, &status, WNOHANG) == pid)
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    return -1;
  }

 private:
  static pid_t Spawn(const std::vector<std::string>& args, const std::string& log,
                     const std::vector<std::pair<std::string, std::string>>& env = {}) {
    pid_t pid = fork();
    if (pid == 0) {
      for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    return pid;
  }

  std::string data_dir_;
  std::vector<std::string> extra_;
  std::string binary_;
  std::vector<std::string> prefix_;
  std::vector<std::pair<std::string, std::string>> env_;
  std::string port_file_, log_file_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace spool::testing

#endif  // SPOOL_TESTS_PROCESS_SPOOLD_PROCESS_H_
