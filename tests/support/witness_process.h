// A latch-witness process for tests (issue 18): configured in a directory
// of the test's own to witness the logs it is given, started on loopback
// (its port read from its log), killed with SIGKILL by its id.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "lib/tlog/cosignature.h"
#include "run_tool.h"

namespace latch::testing {

class WitnessProcess {
 public:
  struct Log {
    std::string origin, vkey;
  };
  // Writes <dir>/witness.toml and makes the witness's key (latch-witness key).
  // False, with why in *error, if that fails.
  bool Configure(const std::filesystem::path& dir, const std::string& name,
                 const std::vector<Log>& logs, std::string* error) {
    dir_ = dir;
    name_ = name;
    logs_ = logs;
    std::filesystem::create_directories(dir_);
    WriteConfig(0);
    std::string out;
    if (RunTool({LATCH_WITNESS_BIN, "key", "--config", dir_ / "witness.toml"}, &out) != 0) {
      *error = out;
      return false;
    }
    while (!out.empty() && out.back() == '\n') out.pop_back();
    if (!tlog::CosignatureVerifier::Parse(out, &key_).ok()) {
      *error = "not a key: " + out;
      return false;
    }
    vkey_ = out;
    return true;
  }
  // Starts it and waits (5 s at most) for its port; false if it did not start.
  bool Start() {
    const std::string log = dir_ / "witness.log";
    ::truncate(log.c_str(), 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      ::dup2(fd, STDERR_FILENO);
      const std::string config = dir_ / "witness.toml";
      ::execl(LATCH_WITNESS_BIN, LATCH_WITNESS_BIN, "--config", config.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    port_ = 0;
    for (int i = 0; i < 500 && port_ == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      const std::string text = ReadLog();
      const size_t at = text.find("listen=127.0.0.1:");
      if (at != std::string::npos) port_ = std::atoi(text.c_str() + at + 17);
    }
    return port_ != 0;
  }
  // Later starts listen on the port it has now (a restart at the same URL).
  void KeepPort() { WriteConfig(port_); }
  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  ~WitnessProcess() { Kill(); }

  // The size it holds for its first log, as `latch-witness state` prints it (0: none).
  uint64_t HeldSize() const {
    std::string out;
    RunTool({LATCH_WITNESS_BIN, "state", "--config", dir_ / "witness.toml"}, &out);
    const size_t at = out.find("size ");
    return at == std::string::npos ? 0 : std::strtoull(out.c_str() + at + 5, nullptr, 10);
  }
  std::string ReadLog() const {
    std::ifstream f(dir_ / "witness.log");
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  }
  int port() const { return port_; }
  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_); }
  // Its self-signed certificate, made on first start: the CA to check it with.
  std::string ca() const { return dir_ / "data/tls.crt"; }
  const tlog::CosignatureVerifier& key() const { return key_; }
  const std::string& vkey() const { return vkey_; }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  void WriteConfig(int port) {
    std::ofstream config(dir_ / "witness.toml");
    config << "name = \"" << name_ << "\"\ndata_dir = \"" << (dir_ / "data").string()
           << "\"\nlisten = \"127.0.0.1:" << port << "\"\n";
    for (const Log& l : logs_) {
      config << "[[log]]\norigin = \"" << l.origin << "\"\nkeys = [\"" << l.vkey << "\"]\n";
    }
  }
  std::filesystem::path dir_;
  std::string name_;
  std::vector<Log> logs_;
  tlog::CosignatureVerifier key_;
  std::string vkey_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace latch::testing
