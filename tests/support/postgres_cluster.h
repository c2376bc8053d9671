// A PostgreSQL 15 cluster of a test's own (Debian's initdb and pg_ctl, as
// scripts/demo runs them), in a directory the test owns: no TCP port, only a
// Unix socket in that directory; trust authentication (nobody else can
// reach the socket). As root, the server runs as the postgres user (it
// refuses root). Stopped and removed with the object.
#pragma once

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "run_tool.h"

namespace latch::testing {

class PostgresCluster {
 public:
  // "" on success, else why not (with initdb's or pg_ctl's output).
  std::string Start() {
    bin_ = FindBin();
    if (bin_.empty()) return "no PostgreSQL server binaries under /usr/lib/postgresql";
    char tmpl[] = "/tmp/latch-pg-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return "mkdtemp failed";
    dir_ = tmpl;
    as_postgres_ = ::geteuid() == 0;
    if (as_postgres_) {
      passwd* pw = ::getpwnam("postgres");
      if (pw == nullptr) return "no postgres user (install the postgresql package)";
      if (::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) return "chown failed";
    }
    std::string out;
    if (Run({bin_ + "/initdb", "-D", dir_ + "/data", "-U", "postgres", "--no-locale", "-E", "UTF8",
             "-A", "trust"},
            &out) != 0) {
      return "initdb failed: " + out;
    }
    return StartServer();
  }
  // A streaming replica of `primary` (pg_basebackup -R) in a directory of
  // its own; with `synchronous`, the primary waits for it at every commit
  // (synchronous_standby_names), so nothing acknowledged is only on the
  // primary. "" on success, else why not.
  std::string StartReplicaOf(PostgresCluster& primary, bool synchronous) {
    bin_ = primary.bin_;
    char tmpl[] = "/tmp/latch-pg-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return "mkdtemp failed";
    dir_ = tmpl;
    as_postgres_ = primary.as_postgres_;
    if (as_postgres_) {
      passwd* pw = ::getpwnam("postgres");
      if (pw == nullptr || ::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0)
        return "chown failed";
    }
    std::string out;
    if (Run({bin_ + "/pg_basebackup", "-h", primary.dir(), "-p", std::to_string(kPort), "-U",
             "postgres", "-D", dir_ + "/data", "-R", "-X", "stream"},
            &out) != 0) {
      return "pg_basebackup failed: " + out;
    }
    std::string why = StartServer();
    if (!why.empty() || !synchronous) return why;
    if (primary.Sql("ALTER SYSTEM SET synchronous_standby_names = '*'", &out) != 0 ||
        primary.Sql("SELECT pg_reload_conf()", &out) != 0) {
      return "setting synchronous_standby_names failed: " + out;
    }
    return "";
  }
  // A replica becomes a primary (pg_ctl promote, waiting for it).
  std::string Promote() {
    std::string out;
    if (Run({bin_ + "/pg_ctl", "-D", dir_ + "/data", "-w", "promote"}, &out) != 0) {
      return "pg_ctl promote failed: " + out;
    }
    return "";
  }
  // Kills the server as a crash would (pg_ctl stop -m immediate), keeping
  // its data; StartServer brings it back.
  void Crash() {
    std::string out;
    if (started_)
      Run({bin_ + "/pg_ctl", "-D", dir_ + "/data", "-m", "immediate", "-w", "stop"}, &out);
    started_ = false;
  }
  std::string StartServer() {
    std::string out;
    if (Run({bin_ + "/pg_ctl", "-D", dir_ + "/data", "-l", dir_ + "/server.log", "-w", "-o",
             "-c listen_addresses='' -c unix_socket_directories='" + dir_ + "' -p " +
                 std::to_string(kPort) + " -c fsync=on",
             "start"},
            &out) != 0) {
      return "pg_ctl start failed: " + out;
    }
    started_ = true;
    return "";
  }
  ~PostgresCluster() { Stop(); }
  void Stop() {
    if (started_) {
      std::string out;
      Run({bin_ + "/pg_ctl", "-D", dir_ + "/data", "-m", "immediate", "-w", "stop"}, &out);
      started_ = false;
    }
    if (!dir_.empty() && !std::getenv("LATCH_KEEP")) std::filesystem::remove_all(dir_);
    dir_.clear();
  }
  // A libpq connection string for database `db` (postgres: always there).
  std::string Conninfo(const std::string& db = "postgres") const {
    return "host=" + dir_ + " port=" + std::to_string(kPort) + " user=postgres dbname=" + db;
  }
  // Runs SQL as the superuser; 0 on success.
  int Sql(const std::string& sql, std::string* out, const std::string& db = "postgres") {
    return Run({bin_ + "/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", dir_, "-p",
                std::to_string(kPort), "-U", "postgres", "-d", db, "-c", sql},
               out);
  }
  const std::string& dir() const { return dir_; }

 private:
  static constexpr int kPort = 5433;  // names the socket file; no TCP port is opened
  static std::string FindBin() {
    std::string best;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
      std::string bin = e.path().string() + "/bin";
      if (std::filesystem::exists(bin + "/initdb") && bin > best) best = bin;
    }
    return best;
  }
  int Run(std::vector<std::string> argv, std::string* out) {
    if (as_postgres_) argv.insert(argv.begin(), {"/usr/sbin/runuser", "-u", "postgres", "--"});
    return RunTool(argv, out, {}, true);
  }
  std::string bin_, dir_;
  bool as_postgres_ = false, started_ = false;
};

}  // namespace latch::testing

// Starts `cluster` or ends the test: a skip where PostgreSQL cannot start
// (no server binaries), a failure under CI=true, where it must.
#define LATCH_START_POSTGRES_OR_SKIP(cluster)                      \
  do {                                                             \
    const std::string why_not = (cluster).Start();                 \
    if (!why_not.empty()) {                                        \
      const char* ci = std::getenv("CI");                          \
      if (ci != nullptr && std::string(ci) == "true") {            \
        FAIL() << "PostgreSQL cannot start under CI: " << why_not; \
      }                                                            \
      GTEST_SKIP() << "PostgreSQL cannot start here: " << why_not; \
    }                                                              \
  } while (0)
