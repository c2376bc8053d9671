// fleet_bench: many simulated agents against one latch-collector process,
// with its ledger in files and in PostgreSQL (issue 17), side by side in one
// run: records acknowledged per second, the collector's resident memory, and
// the time for one grant change to reach every agent.
//
//   build/tests/fleet_bench [--agents 1,1000,10000] [--seconds 10]
//                           [--per-process 500] [--storage files,postgres]
//
// A simulated agent speaks the real protocol over CURVE with its own
// enrolled key: Hello, then batches of 256 decision records, one batch in
// flight, the next sent on its receipt (receipts are not verified here: the
// collector is what is measured). Agents are spread over processes of
// --per-process agents each, every process with its own ZeroMQ context, so
// no one process runs out of sockets or descriptors. The collector, its
// database (PostgreSQL 15 in its own directory, fsync on) and the simulated
// agents share this machine's cores.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "agent/boot_clock.h"
#include "kernel_sandbox.h"
#include "postgres_cluster.h"
#include "run_tool.h"
#include "sample_decision.h"
#include "schemas/canonical.h"
#include "schemas/event_record.h"
#include "schemas/record_codec.h"
#include "schemas/wire.capnp.h"

namespace {

using namespace latch;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

// Thrown, so that what a run started (a collector, simulators, PostgreSQL)
// is ended by its owner's destructor on the way out.
[[noreturn]] void Die(const std::string& what) { throw std::runtime_error(what); }
double Secs(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}
int64_t MonotonicNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

struct Options {
  std::vector<int> agents{1, 1000, 10000};
  double seconds = 10;
  int per_process = 500;
  std::vector<std::string> storages{"files", "postgres"};
};

// What a simulator process tells the bench after each phase.
struct Report {
  uint64_t count = 0;   // agents ready / records acknowledged / agents with the new grants
  int64_t last_ns = 0;  // when the last of them happened (steady clock)
};

// Commands from the bench to a simulator process.
constexpr char kStream = 's', kWatchGrants = 'w';

// One process's share of the fleet: agents [first, first + keys.size()).
class Simulator {
 public:
  Simulator(int first, std::vector<std::pair<std::string, std::string>> keys,
            const std::string& server_key, int port)
      : first_(first),
        ctx_(1),
        welcomed_(keys.size(), false),
        next_seq_(keys.size(), 1),
        grant_version_(keys.size(), 0) {
    ctx_.set(zmq::ctxopt::max_sockets, static_cast<int>(keys.size()) + 16);
    payload_ = record::EncodeDecisionEvent(bench::SampleDecision(1));
    for (size_t i = 0; i < keys.size(); ++i) {
      auto s = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::dealer);
      s->set(zmq::sockopt::curve_serverkey, server_key);
      s->set(zmq::sockopt::curve_publickey, keys[i].first);
      s->set(zmq::sockopt::curve_secretkey, keys[i].second);
      s->set(zmq::sockopt::linger, 0);
      s->connect("tcp://127.0.0.1:" + std::to_string(port));
      socks_.push_back(std::move(s));
      capnp::MallocMessageBuilder m;
      auto h = m.initRoot<schema::Envelope>().initHello();
      h.setHostId("h" + std::to_string(first_ + static_cast<int>(i)));
      h.setBootId(kj::arrayPtr(reinterpret_cast<const capnp::byte*>(kBoot), 16));
      Send(i, m);
    }
    for (auto& s : socks_) items_.push_back({s->handle(), 0, ZMQ_POLLIN, 0});
  }

  // Until every agent has its Welcome (the answer to its Hello).
  Report WaitReady(double timeout_s) {
    const auto start = Clock::now();
    auto welcomed = [&] {
      return static_cast<uint64_t>(std::count(welcomed_.begin(), welcomed_.end(), true));
    };
    while (Secs(start) < timeout_s && welcomed() < socks_.size()) Pump(false, 50);
    return {welcomed(), MonotonicNs()};
  }
  // Streams for `seconds`; the records acknowledged meanwhile.
  Report Stream(double seconds) {
    acked_ = 0;
    for (size_t i = 0; i < socks_.size(); ++i) SendBatch(i);
    const auto start = Clock::now();
    while (Secs(start) < seconds) Pump(true, 100);
    Report r{acked_, MonotonicNs()};
    for (int i = 0; i < 50; ++i) Pump(false, 20);  // the last receipts, not counted
    return r;
  }
  // Notes every agent's grant-set version; then, once told the change is
  // coming, waits until every agent holds a newer one.
  void NoteGrants() { before_ = grant_version_; }
  Report WaitNewGrants(double timeout_s) {
    const auto start = Clock::now();
    Report r;
    while (Secs(start) < timeout_s) {
      Pump(false, 5);
      size_t updated = 0;
      for (size_t i = 0; i < before_.size(); ++i) updated += grant_version_[i] > before_[i];
      if (updated > r.count) {
        r.count = updated;
        r.last_ns = MonotonicNs();
      }
      if (updated == before_.size()) break;
    }
    return r;
  }

 private:
  static constexpr char kBoot[17] =
      "\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05\x05";

  void Send(size_t i, capnp::MessageBuilder& m) {
    auto w = capnp::messageToFlatArray(m);
    socks_[i]->send(zmq::const_buffer(w.asBytes().begin(), w.asBytes().size()),
                    zmq::send_flags::dontwait);
  }
  void SendBatch(size_t i) {
    capnp::MallocMessageBuilder m;
    auto b = m.initRoot<schema::Envelope>().initEventBatch();
    b.setBootId(kj::arrayPtr(reinterpret_cast<const capnp::byte*>(kBoot), 16));
    auto rs = b.initRecords(256);
    for (unsigned k = 0; k < 256; ++k) {
      rs[k].setSequence(next_seq_[i] + k);
      rs[k].setKind(schema::RecordKind::EVENT);
      rs[k].setEventTimeNs(agent::NowUnixNs());
      rs[k].setPayload(
          kj::arrayPtr(reinterpret_cast<const capnp::byte*>(payload_.data()), payload_.size()));
    }
    Send(i, m);
  }
  void Handle(size_t i, const zmq::message_t& msg, bool stream) {
    kj::Array<capnp::word> words = kj::heapArray<capnp::word>(msg.size() / 8);
    std::memcpy(words.begin(), msg.data(), words.size() * 8);
    capnp::ReaderOptions ro;
    ro.traversalLimitInWords = 1 << 28;
    capnp::FlatArrayMessageReader r(words.asPtr(), ro);
    auto env = r.getRoot<schema::Envelope>();
    if (env.isWelcome()) {
      welcomed_[i] = true;
    } else if (env.isReceipt()) {
      const uint64_t through = env.getReceipt().getThroughSequence();
      if (through + 1 > next_seq_[i]) {
        acked_ += through + 1 - next_seq_[i];
        next_seq_[i] = through + 1;
        if (stream) SendBatch(i);
      }
    } else if (env.isGrantSet()) {
      auto set = env.getGrantSet().getSet();
      Status s = schema::ReadCanonical<schema::GrantSet>(
          std::string_view(reinterpret_cast<const char*>(set.begin()), set.size()), "grant set",
          [&](schema::GrantSet::Reader g) {
            grant_version_[i] = g.getVersion();
            return Status::Ok();
          });
      if (!s.ok()) Die(s.ToString());
    }
  }
  void Pump(bool stream, int timeout_ms) {
    zmq::poll(items_.data(), items_.size(), std::chrono::milliseconds(timeout_ms));
    for (size_t i = 0; i < items_.size(); ++i) {
      if (!(items_[i].revents & ZMQ_POLLIN)) continue;
      zmq::message_t msg;
      while (socks_[i]->recv(msg, zmq::recv_flags::dontwait)) Handle(i, msg, stream);
    }
  }

  int first_;
  zmq::context_t ctx_;
  std::vector<std::unique_ptr<zmq::socket_t>> socks_;
  std::vector<zmq::pollitem_t> items_;
  std::vector<bool> welcomed_;
  std::vector<uint64_t> next_seq_, grant_version_, before_;
  std::string payload_;
  uint64_t acked_ = 0;
};

// A simulator process, driven over two pipes.
struct SimulatorProcess {
  pid_t pid = -1;
  int commands = -1;  // bench -> simulator
  int reports = -1;   // simulator -> bench
};

void WriteAll(int fd, const void* data, size_t n) {
  if (::write(fd, data, n) != static_cast<ssize_t>(n)) ::_exit(3);
}
Report ReadReport(const SimulatorProcess& p) {
  Report r;
  if (::read(p.reports, &r, sizeof(r)) != static_cast<ssize_t>(sizeof(r))) {
    Die("a simulator process stopped");
  }
  return r;
}
char ReadCommand(int fd) {
  char c = 0;
  if (::read(fd, &c, 1) != 1) ::_exit(0);  // the bench has gone
  return c;
}

// A simulator process's life: ready, stream, watch for the grant change.
void RunSimulator(int first, std::vector<std::pair<std::string, std::string>> keys,
                  const std::string& server_key, int port, double seconds, int commands,
                  int reports) {
  Simulator sim(first, std::move(keys), server_key, port);
  Report r = sim.WaitReady(120);
  WriteAll(reports, &r, sizeof(r));
  if (ReadCommand(commands) != kStream) ::_exit(4);
  r = sim.Stream(seconds);
  WriteAll(reports, &r, sizeof(r));
  if (ReadCommand(commands) != kWatchGrants) ::_exit(4);
  sim.NoteGrants();
  WriteAll(reports, &r, sizeof(r));  // noted: the change may be made
  r = sim.WaitNewGrants(120);
  WriteAll(reports, &r, sizeof(r));
  ReadCommand(commands);  // until the bench closes the pipe
}

SimulatorProcess StartSimulator(int first, std::vector<std::pair<std::string, std::string>> keys,
                                const std::string& server_key, int port, double seconds) {
  int down[2], up[2];
  if (::pipe2(down, O_CLOEXEC) != 0 || ::pipe2(up, O_CLOEXEC) != 0) Die("pipe");
  SimulatorProcess p;
  p.pid = ::fork();
  if (p.pid < 0) Die("fork");
  if (p.pid == 0) {
    ::close(down[1]);
    ::close(up[0]);
    // No threads or ZeroMQ state was made before the fork: this process
    // makes its own. It never returns into the bench's code.
    try {
      RunSimulator(first, std::move(keys), server_key, port, seconds, down[0], up[1]);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fleet_bench simulator: %s\n", e.what());
      ::_exit(5);
    }
    ::_exit(0);
  }
  ::close(down[0]);
  ::close(up[1]);
  p.commands = down[1];
  p.reports = up[0];
  return p;
}

long ResidentKiB(pid_t pid) {
  std::ifstream st("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(st, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

constexpr int kHostsPerGrant = 2000;

struct FleetResult {
  uint64_t records = 0;
  double seconds = 0;
  double rss_mib = 0;
  double hello_s = 0;        // until every agent held its first grant set
  double grant_ms = 0;       // one grant change, until every agent held it
  uint64_t reached = 0;      // agents that got the change
  int grants = 0;            // grants issued to reach every host
  std::string grant_answer;  // an admin answer refusing one
};

// One fleet of `agents` against a collector whose ledger is `storage`
// ("files", or "postgres" in a database of `cluster` made for this run).
FleetResult RunFleet(int agents, const std::string& storage, const Options& opts,
                     testing::PostgresCluster* cluster) {
  char tmpl[] = "/tmp/latch-fleet-bench-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) Die("mkdtemp");
  const std::string dir = tmpl;
  const int port = agent::FreeLoopbackPort();
  std::vector<std::pair<std::string, std::string>> keys(static_cast<size_t>(agents));
  std::ostringstream config;
  config << "data_dir = \"" << dir << "/collector\"\norigin = \"fleet.example/ledger\"\n"
         << "endpoints = [\"tcp://127.0.0.1:" << port << "\"]\n";
  if (storage == "postgres") {
    const std::string db = "fleet_" + std::to_string(agents);
    std::string out;
    if (cluster->Sql("CREATE DATABASE " + db, &out) != 0) Die(out);
    config << "[storage]\npostgres = \"" << cluster->Conninfo(db) << "\"\nkey = \"" << dir
           << "/ledger.key\"\n";
    std::ofstream(dir + "/init.toml") << config.str();
    if (testing::RunTool({LATCH_COLLECTOR_BIN, "storage", "init", "--config", dir + "/init.toml"},
                         &out, {}, /*with_stderr=*/true) != 0) {
      Die("storage init: " + out);
    }
  }
  for (int i = 0; i < agents; ++i) {
    char pub[41], sec[41];
    zmq_curve_keypair(pub, sec);
    keys[static_cast<size_t>(i)] = {pub, sec};
    config << "[[agent]]\nhost_id = \"h" << i << "\"\ncurve_public_key = \"" << pub << "\"\n";
  }
  std::ofstream(dir + "/collector.toml") << config.str();
  const pid_t collector = ::fork();
  if (collector == 0) {
    // Its log in its directory, not among the figures.
    const int log = ::open((dir + "/collector.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (log >= 0) {
      ::dup2(log, 1);
      ::dup2(log, 2);
    }
    ::execl(LATCH_COLLECTOR_BIN, LATCH_COLLECTOR_BIN, "--config", (dir + "/collector.toml").c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Ends what this run started, by id, however it returns.
  struct Reaper {
    pid_t collector;
    std::vector<SimulatorProcess> sims;
    std::string dir;
    ~Reaper() {
      for (auto& s : sims) {
        ::close(s.commands);
        ::close(s.reports);
        ::kill(s.pid, SIGKILL);
        ::waitpid(s.pid, nullptr, 0);
      }
      ::kill(collector, SIGTERM);
      ::waitpid(collector, nullptr, 0);
      fs::remove_all(dir);
    }
  } reaper{collector, {}, dir};
  std::string server_key;
  for (int i = 0; i < 600 && server_key.empty(); ++i) {
    std::ifstream in(dir + "/collector/curve.key");
    std::getline(in, server_key);
    if (server_key.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (server_key.empty()) Die("the collector made no CURVE key in 30 s");

  FleetResult result;
  const auto hello_start = Clock::now();
  for (int first = 0; first < agents; first += opts.per_process) {
    const int n = std::min(opts.per_process, agents - first);
    reaper.sims.push_back(StartSimulator(first,
                                         std::vector<std::pair<std::string, std::string>>(
                                             keys.begin() + first, keys.begin() + first + n),
                                         server_key, port, opts.seconds));
  }
  uint64_t ready = 0;
  for (const auto& s : reaper.sims) ready += ReadReport(s).count;
  result.hello_s = Secs(hello_start);
  if (ready != static_cast<uint64_t>(agents)) {
    std::string log, line;
    std::ifstream in(dir + "/collector.log");
    std::vector<std::string> tail;
    while (std::getline(in, line)) {
      if (line.find("level=info") == std::string::npos) tail.push_back(line);
    }
    for (size_t i = tail.size() > 10 ? tail.size() - 10 : 0; i < tail.size(); ++i) {
      log += "\n  " + tail[i];
    }
    Die(std::to_string(ready) + " of " + std::to_string(agents) +
        " agents were welcomed; the collector's log ends:" + log);
  }
  for (const auto& s : reaper.sims) WriteAll(s.commands, &kStream, 1);
  for (const auto& s : reaper.sims) result.records += ReadReport(s).count;
  result.seconds = opts.seconds;
  result.rss_mib = ResidentKiB(collector) / 1024.0;

  for (const auto& s : reaper.sims) WriteAll(s.commands, &kWatchGrants, 1);
  for (const auto& s : reaper.sims) ReadReport(s);  // every version noted
  // One grant for every host; past kHostsPerGrant hosts, several issued
  // back to back (a grant's record must fit one ledger entry, 64 KiB: about
  // 4,000 host names).
  zmq::context_t ctx(1);
  zmq::socket_t admin(ctx, zmq::socket_type::req);
  admin.connect("ipc://" + dir + "/collector/admin.sock");
  const int64_t t0 = MonotonicNs();
  for (int from = 0; from < agents; from += kHostsPerGrant) {
    nlohmann::json hosts = nlohmann::json::array();
    for (int i = from; i < std::min(agents, from + kHostsPerGrant); ++i) {
      hosts.push_back("h" + std::to_string(i));
    }
    const std::string req = nlohmann::json{
        {"op", "issue"},
        {"principals", {{{"uid", 1000}}}},
        {"resources", {9}},
        {"hosts", hosts},
        {"duration_s", 60}}.dump();
    admin.send(zmq::buffer(req), zmq::send_flags::none);
    zmq::message_t answer;
    if (!admin.recv(answer)) Die("the admin socket gave no answer");
    if (answer.to_string().find("\"ok\":true") == std::string::npos) {
      result.grant_answer = answer.to_string();
    }
    ++result.grants;
  }
  int64_t last = t0;
  for (const auto& s : reaper.sims) {
    const Report r = ReadReport(s);
    result.reached += r.count;
    last = std::max(last, r.last_ns);
  }
  result.grant_ms = static_cast<double>(last - t0) / 1e6;
  admin.close();
  return result;
}

std::vector<std::string> Split(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

void Run(const Options& opts) {
  testing::PostgresCluster cluster;
  if (std::find(opts.storages.begin(), opts.storages.end(), "postgres") != opts.storages.end()) {
    const std::string why = cluster.Start();
    if (!why.empty()) Die("PostgreSQL cannot start: " + why);
  }
  std::printf("%d-core machine; %.0f s of streaming per fleet; %d agents per simulator process\n",
              static_cast<int>(std::thread::hardware_concurrency()), opts.seconds,
              opts.per_process);
  std::printf("%-7s %-9s %11s %9s %11s %16s %7s %8s\n", "agents", "ledger", "records/s", "vs files",
              "memory MiB", "grants to all ms", "grants", "hello s");
  for (int agents : opts.agents) {
    double files_rate = 0;
    for (const auto& storage : opts.storages) {
      const FleetResult r = RunFleet(agents, storage, opts, &cluster);
      const double rate = static_cast<double>(r.records) / r.seconds;
      if (storage == "files") files_rate = rate;
      char ratio[16] = "-";
      if (storage != "files" && files_rate > 0) {
        std::snprintf(ratio, sizeof(ratio), "%.2f", rate / files_rate);
      }
      std::printf("%-7d %-9s %11.0f %9s %11.1f %16.1f %7d %8.1f", agents, storage.c_str(), rate,
                  ratio, r.rss_mib, r.grant_ms, r.grants, r.hello_s);
      if (r.reached != static_cast<uint64_t>(agents)) {
        std::printf("  (the change reached %llu; the issue was answered %s)",
                    static_cast<unsigned long long>(r.reached), r.grant_answer.c_str());
      }
      std::printf("\n");
      std::fflush(stdout);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options opts;
  for (int i = 1; i < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = i + 1 < argc ? argv[i + 1] : "";
    if (flag == "--agents" && !value.empty()) {
      opts.agents.clear();
      for (const auto& a : Split(value)) opts.agents.push_back(std::stoi(a));
    } else if (flag == "--seconds" && !value.empty()) {
      opts.seconds = std::stod(value);
    } else if (flag == "--per-process" && !value.empty()) {
      opts.per_process = std::stoi(value);
    } else if (flag == "--storage" && !value.empty()) {
      opts.storages = Split(value);
    } else {
      std::fprintf(stderr,
                   "usage: fleet_bench [--agents 1,1000,10000] [--seconds 10] "
                   "[--per-process 500] [--storage files,postgres]\n");
      return 2;
    }
  }
  ::signal(SIGPIPE, SIG_IGN);
  try {
    for (const auto& s : opts.storages) {
      if (s != "files" && s != "postgres") Die("--storage takes files and/or postgres, not " + s);
    }
    for (int a : opts.agents) {
      if (a < 1) Die("--agents takes positive counts");
    }
    if (opts.per_process < 1 || opts.seconds <= 0) Die("--per-process and --seconds: positive");
    Run(opts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fleet_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
