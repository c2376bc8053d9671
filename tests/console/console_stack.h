// Test and benchmark helper: what the web console runs against, started
// for real in a directory of its own: a latch-collector with the HTTPS API
// and a small policy (tess requests db, ann approves it, sam audits), a
// latch-agent guarding a cgroup made for it on the real kernel (never the
// root cgroup), a loopback listener as db, and Debian's headless Chromium
// driven by tests/console/console_driver.py, one profile per person.
// Everything it starts it ends, by process id.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "https_client.h"
#include "kernel_sandbox.h"
#include "run_tool.h"

namespace latch::testing {

class ConsoleStack {
 public:
  static constexpr uint32_t kTessUid = 6464;
  static constexpr uint32_t kOtisUid = 6465;  // on call: may approve his own (break-glass)
  using Clock = std::chrono::steady_clock;

  // Makes the directory, the cgroup, the keys and configurations, and
  // starts the collector and the agent; "" on success, else what failed.
  std::string Start(const std::string& name) {
    namespace fs = std::filesystem;
    std::string tmpl_text = "/tmp/" + name + "-XXXXXX";
    std::vector<char> tmpl(tmpl_text.begin(), tmpl_text.end());
    tmpl.push_back('\0');
    if (::mkdtemp(tmpl.data()) == nullptr) return "mkdtemp failed";
    dir_ = tmpl.data();
    std::string why = sandbox_.Create(name);
    if (!why.empty()) return why;
    if (!StartListener()) return "cannot listen on loopback";
    collector_port_ = agent::FreeLoopbackPort();
    api_port_ = agent::FreeLoopbackPort();
    for (const char* who : {"tess", "ann", "sam", "otis"}) {
      tokens_[who] = std::string(who) + "-console-token-" + std::to_string(::getpid()) + "-x";
      std::ofstream(TokenFile(who)) << tokens_[who];
    }
    WritePolicy();
    WriteCollectorConfig("");
    std::string out;
    if (RunTool({LATCH_COLLECTOR_BIN, "keys", "--config", dir_ + "/collector.toml"}, &out) != 0) {
      return "latch-collector keys: " + out;
    }
    collector_keys_ = out;
    size_t at = out.find("ledger_key = \"");
    if (at == std::string::npos) return "no ledger_key in: " + out;
    ledger_key_ = out.substr(at + 14, out.find('"', at + 14) - at - 14);
    WriteAgentConfig();
    if (RunTool({LATCH_AGENT_BIN, "key", "--config", dir_ + "/agent.toml"}, &out) != 0) {
      return "latch-agent key: " + out;
    }
    WriteCollectorConfig(out.substr(0, 40));
    collector_ =
        Spawn({LATCH_COLLECTOR_BIN, "--config", dir_ + "/collector.toml"}, dir_ + "/collector.log");
    agent_ = Spawn({LATCH_AGENT_BIN, "--config", dir_ + "/agent.toml"}, dir_ + "/agent.log");
    if (!WaitForApi()) return "the API did not answer: " + Tail("collector.log");
    // The agent holds the policy's resource once tess is refused.
    if (!ConnectBecomes(EPERM, std::chrono::seconds(30))) {
      return "the agent did not guard db: " + Tail("agent.log") + Tail("collector.log");
    }
    return "";
  }

  ~ConsoleStack() {
    for (pid_t p : extra_) Kill(p);
    Kill(agent_);
    Kill(collector_);
    if (listener_ >= 0) {
      stop_ = true;
      ::shutdown(listener_, SHUT_RDWR);
      accept_.join();
      ::close(listener_);
    }
    if (!dir_.empty()) {
      std::string out;
      RunTool({LATCH_AGENT_BIN, "uninstall", "--config", dir_ + "/agent.toml"}, &out);
      if (!std::getenv("LATCH_KEEP")) std::filesystem::remove_all(dir_);
    }
  }

  // One step of the browser driver as `who` (their own profile), at `url`
  // (the console's by default). Its JSON answer, or an object with "error".
  nlohmann::json Browser(const std::string& who, std::vector<std::string> args,
                         const std::string& url = "") const {
    std::vector<std::string> argv = {
        "/usr/bin/python3",
        std::string(LATCH_SOURCE_DIR) + "/tests/console/console_driver.py",
        args[0],
        "--url",
        url.empty() ? Url() : url,
        "--profile",
        dir_ + "/chrome-" + who};
    argv.insert(argv.end(), args.begin() + 1, args.end());
    std::string out;
    int rc = RunTool(argv, &out, {}, true);
    size_t brace = out.rfind("\n{");
    std::string json = brace == std::string::npos ? out : out.substr(brace + 1);
    if (rc != 0 || !nlohmann::json::accept(json)) {
      return {{"error", "browser step " + args[0] + " as " + who + " failed (" +
                            std::to_string(rc) + "):\n" + out + "\ncollector log tail:\n" +
                            Tail("collector.log")}};
    }
    return nlohmann::json::parse(json);
  }

  HttpsReply Api(boost::beast::http::verb verb, const std::string& target, const std::string& who,
                 const std::string& body = "",
                 const std::map<std::string, std::string>& headers = {}) const {
    auto token = tokens_.find(who);
    return HttpsCall(api_port_, dir_ + "/collector/api.crt", verb, target,
                     token == tokens_.end() ? "" : token->second, body, "", "", headers);
  }

  // Polls a connect as tess from the guarded cgroup until it returns `want`
  // (0: connected, else the errno).
  bool ConnectBecomes(int want, std::chrono::seconds within) const {
    auto deadline = Clock::now() + within;
    while (Clock::now() < deadline) {
      if (agent::ConnectFromCgroupAs(sandbox_.cgroup(), kTessUid, db_port_) == want) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  // `n` connects as tess from one child in the guarded cgroup; how many
  // connected.
  int ConnectMany(int n) const {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return -1;
    pid_t child = ::fork();
    if (child == 0) {
      if (!agent::JoinCgroupAs(sandbox_.cgroup() + "/cgroup.procs", kTessUid)) ::_exit(100);
      int made = 0;
      for (int i = 0; i < n; ++i) {
        int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a = agent::Loopback4(db_port_);
        if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) ++made;
        ::close(s);
      }
      (void)!::write(p[1], &made, sizeof(made));
      ::_exit(0);
    }
    ::close(p[1]);
    int made = -1;
    if (::read(p[0], &made, sizeof(made)) != sizeof(made)) made = -1;
    ::close(p[0]);
    ::waitpid(child, nullptr, 0);
    return made;
  }

  // Starts a helper process (ended with the stack).
  pid_t SpawnHelper(const std::vector<std::string>& argv, const std::string& log_name) {
    pid_t pid = Spawn(argv, dir_ + "/" + log_name);
    extra_.push_back(pid);
    return pid;
  }

  std::string Tail(const std::string& name) const {
    std::string text = Slurp(dir_ + "/" + name);
    return text.size() > 3000 ? text.substr(text.size() - 3000) : text;
  }
  static std::string Slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  std::string Url() const { return "https://127.0.0.1:" + std::to_string(api_port_); }
  std::string TokenFile(const std::string& who) const { return dir_ + "/" + who + ".token"; }
  const std::string& dir() const { return dir_; }
  const std::string& ledger_key() const { return ledger_key_; }
  const std::map<std::string, std::string>& tokens() const { return tokens_; }
  uint16_t api_port() const { return api_port_; }

 private:
  bool StartListener() {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = agent::Loopback4(0);
    socklen_t len = sizeof(a);
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&a), len) != 0) return false;
    if (::listen(listener_, 1024) != 0) return false;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
    db_port_ = ntohs(a.sin_port);
    accept_ = std::thread([this] {
      while (!stop_) {
        int c = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) ::close(c);
        if (c < 0 && stop_) return;
      }
    });
    return true;
  }
  void WritePolicy() {
    std::ofstream(dir_ + "/policy.toml")
        << "auditor_groups = [\"security\"]\n"
        << "[[host]]\nid = \"host-a\"\n"
        << "[[resource]]\nname = \"db\"\nid = 9\ndestinations = [\"127.0.0.1/32\"]\n"
        << "protocol = \"tcp\"\nports = \"" << db_port_ << "\"\nhosts = [\"host-a\"]\n"
        << "[[identity]]\nname = \"tess\"\ngroups = [\"dev\"]\nuid = " << kTessUid << "\n"
        << "[[identity]]\nname = \"ann\"\ngroups = [\"dba\"]\n"
        << "[[identity]]\nname = \"sam\"\ngroups = [\"security\"]\n"
        << "[[identity]]\nname = \"otis\"\ngroups = [\"oncall\"]\nuid = " << kOtisUid << "\n"
        << "[[request_rule]]\nresources = [\"db\"]\nrequesters = [\"tess\", \"otis\"]\n"
        << "max_duration = \"1h\"\n"
        << "[[approval_rule]]\nresources = [\"db\"]\napprover_groups = [\"dba\"]\n"
        << "break_glass_groups = [\"oncall\"]\n";
  }
  void WriteCollectorConfig(const std::string& agent_key) {
    std::ofstream f(dir_ + "/collector.toml");
    f << "data_dir = \"" << dir_ << "/collector\"\norigin = \"console.test/ledger\"\n"
      << "endpoints = [\"tcp://127.0.0.1:" << collector_port_ << "\"]\nbatch_max_age_ms = 2\n"
      << "policy = \"" << dir_ << "/policy.toml\"\n"
      << "[api]\nlisten = \"127.0.0.1:" << api_port_ << "\"\n";
    for (const auto& [who, token] : tokens_) {
      std::string hash;
      RunTool(
          {"/bin/sh", "-c", std::string(LATCH_COLLECTOR_BIN) + " token-hash < " + TokenFile(who)},
          &hash);
      f << "[[api_token]]\nidentity = \"" << who << "\"\nsha256 = \"" << hash.substr(0, 64)
        << "\"\n";
    }
    if (!agent_key.empty()) {
      f << "[[agent]]\nhost_id = \"host-a\"\ncurve_public_key = \"" << agent_key << "\"\n";
    }
  }
  void WriteAgentConfig() {
    std::ofstream f(dir_ + "/agent.toml");
    f << "host_id = \"host-a\"\ncgroup = \"" << sandbox_.cgroup() << "\"\npin_dir = \""
      << sandbox_.pin_dir() << "\"\nmetrics_listen = \"127.0.0.1:0\"\n"
      << "[collector]\nendpoints = [\"tcp://127.0.0.1:" << collector_port_ << "\"]\n"
      << "state_dir = \"" << dir_ << "/agent-state\"\n";
    std::string keys = collector_keys_;
    size_t at = keys.find("curve_public_key");
    if (at != std::string::npos) keys.replace(at, 16, "server_public_key");
    f << keys;
  }
  static pid_t Spawn(const std::vector<std::string>& argv, const std::string& log) {
    pid_t pid = ::fork();
    if (pid == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      ::dup2(fd, STDERR_FILENO);
      ::dup2(fd, STDOUT_FILENO);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    return pid;
  }
  static void Kill(pid_t pid) {
    if (pid <= 0) return;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  bool WaitForApi() const {
    auto deadline = Clock::now() + std::chrono::seconds(20);
    while (Clock::now() < deadline) {
      // The certificate is made on the collector's first start.
      if (std::filesystem::exists(dir_ + "/collector/api.crt") &&
          Api(boost::beast::http::verb::get, "/healthz", "").status == 200) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  std::string dir_;
  agent::KernelSandbox sandbox_;
  int listener_ = -1;
  std::atomic<bool> stop_{false};
  std::thread accept_;
  uint16_t db_port_ = 0, collector_port_ = 0, api_port_ = 0;
  std::map<std::string, std::string> tokens_;
  std::string collector_keys_, ledger_key_;
  pid_t collector_ = -1, agent_ = -1;
  std::vector<pid_t> extra_;
};

}  // namespace latch::testing
