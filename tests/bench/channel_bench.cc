// channel_bench: the agent-collector channel, measured.
//
//   build/tests/channel_bench [--events N] [--grants N] [--cycles N]
//                             [--seconds N] [--rate N] [--parts e,g,w,l]
//
// (Many simulated agents against one collector: fleet_bench.)
//
// e (end to end): N decision records from one agent into the durable ledger:
//   the agent's own pieces (spool sink, spool, collector link with receipt
//   verification) fed straight from memory (a kernel cannot make more than
//   ~150,000 decisions/s from one process here), an in-process collector over
//   CURVE on loopback. Side by side in the same run: the ledger's own append
//   rate for the same records.
// g (grant latency, root): an in-process collector and agent daemon on a
//   sandbox cgroup; N grants issued through the admin socket, each timed until
//   the kernel's grant map holds it, then revoked and timed until it is gone.
// w (request to effective, root): the approval workflow over the HTTPS API
//   with an in-process collector and agent: N requests, each approved and
//   timed until a connect on the host succeeds, then revoked and timed until
//   connects fail again.
// l (lossy link, root; not in the default parts): one agent's channel over a
//   link that drops 20% of packets and delays the rest 100 ms each way
//   (tests/support/lossy_link.h: two namespaces and a user-space relay),
//   --rate records/s for --seconds: how many records the collector received
//   for each one made (the resend volume), the sessions the agent started and
//   why, and how long the last records took to be acknowledged.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>
#include <zmq.hpp>

#include "agent/activity_capture.h"
#include "agent/agent_daemon.h"
#include "agent/boot_clock.h"
#include "agent/checkpoint_witness.h"
#include "agent/collector_link.h"
#include "agent/spool.h"
#include "agent/spool_sink.h"
#include "collector/api/api_server.h"
#include "collector/ingest/collector_server.h"
#include "collector/ledger/batcher.h"
#include "collector/ledger/file_ledger.h"
#include "https_client.h"
#include "kernel_sandbox.h"
#include "lossy_delivery.h"
#include "sample_decision.h"
#include "schemas/canonical.h"
#include "schemas/event_record.h"
#include "schemas/record_codec.h"
#include "schemas/wire.capnp.h"

namespace {

using namespace latch;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

[[noreturn]] void Die(const std::string& what) { throw std::runtime_error(what); }
void Check(const Status& s, const char* what) {
  if (!s.ok()) Die(std::string(what) + ": " + s.ToString());
}
double Secs(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}
std::string TempDir(const char* name) {
  std::string t = (fs::temp_directory_path() / (std::string(name) + "-XXXXXX")).string();
  if (::mkdtemp(t.data()) == nullptr) Die("mkdtemp");
  return t;
}
int FreePort() { return agent::FreeLoopbackPort(); }

// p50, p99, max and min of `ms`, one line.
void ReportLatency(const char* what, std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  auto pct = [&](double p) {
    return ms[std::min(ms.size() - 1, static_cast<size_t>(p * ms.size()))];
  };
  std::printf("  %s: p50 %.2f ms, p99 %.2f ms, max %.2f ms, min %.2f ms (%zu samples)\n", what,
              pct(0.5), pct(0.99), ms.back(), ms.front(), ms.size());
}

// A collector on a thread, with one agent key enrolled as "bench-host";
// `more` adjusts the configuration (policy, API) before it opens.
struct InProcessCollector {
  InProcessCollector(const std::string& dir, const std::string& agent_public, int port,
                     const std::function<void(collector::CollectorConfig*)>& more = nullptr) {
    collector::CollectorConfig c;
    c.data_dir = dir;
    c.origin = "bench.example/ledger";
    c.endpoints = {"tcp://127.0.0.1:" + std::to_string(port)};
    c.agents[agent_public] = "bench-host";
    if (more) more(&c);
    Check(collector::CollectorServer::Open(c, &server), "collector");
    thread = std::thread([this] { (void)server->Run(); });
  }
  ~InProcessCollector() {
    server->Stop();
    thread.join();
  }
  std::unique_ptr<collector::CollectorServer> server;
  std::thread thread;
};

// What an in-process agent left pinned in `sandbox`: activity capture (under
// the guard's pin directory), then the guard.
void UninstallAgent(const agent::KernelSandbox& sandbox) {
  Check(agent::ActivityCapture::Uninstall(sandbox.pin_dir() + "/activity"), "uninstall capture");
  Check(agent::Guard::Uninstall(sandbox.pin_dir()), "uninstall");
}

// latch-agent's daemon on a thread, guarding `sandbox`'s cgroup, with
// resource 9 ("db": 127.0.0.1, TCP `db_port`), enrolled with `collector`
// under the key in dir/agent.key.
struct InProcessAgent {
  InProcessAgent(const std::string& dir, const agent::KernelSandbox& sandbox,
                 const InProcessCollector& collector, int collector_port, uint16_t db_port) {
    agent::AgentConfig ac;
    ac.host_id = "bench-host";
    ac.cgroup = sandbox.cgroup();
    ac.pin_dir = sandbox.pin_dir();
    resource::Resource r{
        9, "db", {}, resource::Protocol::kTcp, db_port, db_port, resource::Mode::kEnforce};
    if (!resource::Cidr::Parse("127.0.0.1", &r.destinations.emplace_back()).ok()) Die("cidr");
    ac.resources = {r};
    ac.collector.enabled = true;
    ac.collector.endpoints = {"tcp://127.0.0.1:" + std::to_string(collector_port)};
    ac.collector.server_public_key = collector.server->curve_public_key();
    ac.collector.grant_keys = {collector.server->grant_vkey()};
    ac.collector.ledger_key = collector.server->ledger_vkey();
    ac.collector.state_dir = dir + "/agent";
    fs::create_directories(ac.collector.state_dir);
    fs::copy_file(dir + "/agent.key", ac.collector.state_dir + "/agent.key");
    daemon = std::make_unique<agent::AgentDaemon>(ac, records, log);
    Check(daemon->Start(), "agent start");
    thread = std::thread([this] { (void)daemon->Run(); });
  }
  ~InProcessAgent() {
    daemon->Stop();
    thread.join();
  }
  std::ostringstream records, log_text;
  logging::Logger log{"bench-agent", &log_text};
  std::unique_ptr<agent::AgentDaemon> daemon;
  std::thread thread;
};

void EndToEnd(uint64_t n) {
  std::printf("end to end: %llu records from one agent into the durable ledger\n",
              static_cast<unsigned long long>(n));
  std::string dir = TempDir("/tmp/latch-channel-bench");
  schema::CurveKeyPair agent_key;
  Check(schema::LoadOrCreateCurveKey(dir + "/agent.key", &agent_key), "agent key");
  int port = FreePort();
  double e2e_rate = 0;
  {
    InProcessCollector collector(dir + "/collector", agent_key.public_z85, port);
    agent::SpoolOptions so;
    so.dir = dir + "/spool";
    so.max_bytes = 4ull << 30;
    std::unique_ptr<agent::Spool> spool;
    Check(agent::Spool::Open(so, std::string(16, '\x07'), &spool), "spool");
    tlog::NoteVerifier ledger_key;
    Check(tlog::NoteVerifier::Parse(collector.server->ledger_vkey(), &ledger_key), "vkey");
    std::unique_ptr<agent::CheckpointWitness> witness;
    Check(agent::CheckpointWitness::Open(dir + "/checkpoint", ledger_key, &witness), "witness");
    agent::SpoolSink sink(*spool);
    boost::asio::io_context io;
    agent::CollectorLinkOptions lo;
    lo.endpoints = {"tcp://127.0.0.1:" + std::to_string(port)};
    lo.server_public_key = collector.server->curve_public_key();
    lo.key = agent_key;
    lo.host_id = "bench-host";
    lo.batch_records = 4096;
    lo.window_batches = 8;
    std::ostringstream log_text;
    logging::Logger log("bench-agent", &log_text);
    agent::CollectorLink link(
        io, lo, *spool, *witness, [] { return uint64_t{0}; }, [](schema::SignedGrantSet::Reader) {},
        log);
    uint64_t fed = 0;
    auto start = Clock::now();
    // The daemon's shape: a ring read of up to 4096 records, flush, pump.
    std::function<void()> feed = [&] {
      for (int i = 0; i < 4096 && fed < n; ++i) sink.AddEvent(bench::SampleDecision(fed++));
      Check(sink.Flush(), "spool flush");
      link.Pump();
      if (link.counters().records_acknowledged >= n) {
        io.stop();
        return;
      }
      // Keep at most ~1M unacknowledged records queued, as a full ring would.
      if (fed < n && spool->unacknowledged() < (1u << 20)) {
        boost::asio::post(io, feed);
      } else {
        auto t = std::make_shared<boost::asio::steady_timer>(io, std::chrono::microseconds(200));
        t->async_wait([t, &feed](const boost::system::error_code&) { feed(); });
      }
    };
    Check(link.Start(), "link");
    boost::asio::post(io, feed);
    io.run();
    double secs = Secs(start);
    e2e_rate = n / secs;
    std::printf(
        "  agent -> collector -> durable ledger, receipts verified: %llu records in %.2f s: "
        "%.0f records/s (receipts %llu, rejected %llu)\n",
        static_cast<unsigned long long>(link.counters().records_acknowledged), secs, e2e_rate,
        static_cast<unsigned long long>(link.counters().receipts),
        static_cast<unsigned long long>(link.counters().receipts_rejected));
  }
  // The ledger alone, same records (as the collector encodes them), same batcher.
  {
    std::string ldir = dir + "/ledger-only";
    Check(ledger::FileLedger::Create(ldir, "bench.example/only"), "ledger");
    std::unique_ptr<ledger::Ledger> l;
    Check(ledger::FileLedger::Open(ldir, ledger::FileLedger::Mode::kReadWrite, &l), "ledger");
    ledger::Batcher batcher(*l, {});
    ledger::LedgerRecord rec;
    rec.kind = ledger::RecordKind::kEvent;
    rec.host_id = "bench-host";
    rec.agent_boot_id = std::string(16, '\x07');
    std::atomic<uint64_t> done{0};
    auto start = Clock::now();
    std::string bytes;
    for (uint64_t i = 0; i < n;) {
      ledger::EntryBatch batch;
      for (int k = 0; k < 4096 && i < n; ++k, ++i) {
        rec.sequence = i + 1;
        rec.event_time_ns = rec.receive_time_ns = agent::NowUnixNs();
        rec.payload = record::EncodeDecisionEvent(bench::SampleDecision(i));
        Check(ledger::EncodeRecord(rec, &bytes), "encode");
        Check(batch.Add(bytes), "add");
      }
      size_t size = batch.size();
      batcher.Submit(std::move(batch), [&done, size](const Status& s, uint64_t) {
        if (s.ok()) done += size;
      });
    }
    while (done.load() < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    double secs = Secs(start);
    double rate = n / secs;
    std::printf("  ledger alone (encode + append, same records): %.2f s: %.0f records/s\n", secs,
                rate);
    std::printf("  ratio end to end / ledger alone: %.2f\n", e2e_rate / rate);
  }
  fs::remove_all(dir);
}

// Grant-to-kernel and revoke-to-kernel latency over the real pieces.
void GrantLatency(int n) {
  if (::geteuid() != 0) Die("the grant latency part needs root");
  std::printf("grant latency: %d grants issued and revoked through the admin socket\n", n);
  agent::KernelSandbox sandbox;
  std::string why = sandbox.Create("latch-channel-bench");
  if (!why.empty()) Die(why);
  std::string dir = TempDir("/tmp/latch-grant-bench");
  int port = FreePort();
  schema::CurveKeyPair agent_key;
  Check(schema::LoadOrCreateCurveKey(dir + "/agent.key", &agent_key), "agent key");
  std::vector<double> grant_ms, revoke_ms;
  {
    InProcessCollector collector(dir + "/collector", agent_key.public_z85, port);
    InProcessAgent agent(dir, sandbox, collector, port, 5432);
    int grants_fd = bpf_obj_get((sandbox.pin_dir() + "/latch_grants").c_str());
    if (grants_fd < 0) Die("open pinned grants map");
    zmq::context_t ctx;
    zmq::socket_t admin(ctx, zmq::socket_type::req);
    admin.connect(collector.server->admin_endpoint());
    auto send = [&](const nlohmann::json& j) {
      std::string req = j.dump();
      admin.send(zmq::buffer(req), zmq::send_flags::none);
    };
    auto reply_of = [&]() {
      zmq::message_t reply;
      (void)admin.recv(reply);
      auto out = nlohmann::json::parse(reply.to_string());
      if (!out.value("ok", false)) Die("admin: " + reply.to_string());
      return out;
    };
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the agent's Hello
    for (int i = 0; i < n; ++i) {
      uint32_t uid = 100000 + static_cast<uint32_t>(i);
      latch_grant_key key{LATCH_PRINCIPAL_UID, 9, uid};
      latch_grant_value value{};
      // Timed from the request until the kernel's map has it; the admin
      // reply is read afterwards.
      auto t0 = Clock::now();
      send({{"op", "issue"},
            {"principals", {{{"uid", uid}}}},
            {"resources", {9}},
            {"hosts", {"bench-host"}},
            {"duration_s", 600}});
      while (bpf_map_lookup_elem(grants_fd, &key, &value) != 0) {
        if (Secs(t0) > 10) Die("grant never reached the kernel");
      }
      grant_ms.push_back(Secs(t0) * 1e3);
      auto reply = reply_of();
      auto t1 = Clock::now();
      send({{"op", "revoke"}, {"grant_id", reply["grant_id"]}});
      while (bpf_map_lookup_elem(grants_fd, &key, &value) == 0) {
        if (Secs(t1) > 10) Die("revocation never reached the kernel");
      }
      revoke_ms.push_back(Secs(t1) * 1e3);
      reply_of();
    }
    ::close(grants_fd);
  }
  UninstallAgent(sandbox);
  fs::remove_all(dir);
  ReportLatency("issue -> in the kernel (includes the durable ledger record)", grant_ms);
  ReportLatency("revoke -> gone from the kernel", revoke_ms);
}

// Request-to-effective through the whole workflow: a request and its
// approval over the HTTPS API, timed from the approval's answer until a
// connect on the host succeeds; then revocation until connects fail again.
// A prober process in the guarded cgroup, as the requester's uid, connects
// every 100 us and reports each change of outcome with its time.
void RequestToEffective(int n) {
  if (::geteuid() != 0) Die("the request-to-effective part needs root");
  std::printf("request to effective: %d requests approved over the HTTPS API, then revoked\n", n);
  constexpr uint32_t kUid = 6262;
  agent::KernelSandbox sandbox;
  std::string why = sandbox.Create("latch-approval-bench");
  if (!why.empty()) Die(why);
  std::string dir = TempDir("/tmp/latch-approval-bench");
  int port = FreePort();
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in la = agent::Loopback4(0);
  socklen_t len = sizeof(la);
  if (::bind(listener, reinterpret_cast<sockaddr*>(&la), len) != 0 || ::listen(listener, 4096) != 0)
    Die("listen");
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&la), &len);
  uint16_t db_port = ntohs(la.sin_port);
  std::atomic<bool> stop{false};
  std::thread acceptor([&] {
    while (!stop) {
      int c = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (c >= 0) ::close(c);
    }
  });
  std::ofstream(dir + "/policy.toml")
      << "[[host]]\nid = \"bench-host\"\n"
      << "[[resource]]\nname = \"db\"\nid = 9\ndestinations = [\"127.0.0.1/32\"]\nports = \""
      << db_port << "\"\nhosts = [\"bench-host\"]\n"
      << "[[identity]]\nname = \"tess\"\ngroups = [\"dev\"]\nuid = " << kUid << "\n"
      << "[[identity]]\nname = \"ann\"\ngroups = [\"dba\"]\n"
      << "[[request_rule]]\nresources = [\"db\"]\nrequesters = [\"tess\"]\nmax_duration = \"1h\"\n"
      << "[[approval_rule]]\nresources = [\"db\"]\napprover_groups = [\"dba\"]\n";
  const std::string tess = "tess-bench-token-0123456789", ann = "ann-bench-token-0123456789";
  schema::CurveKeyPair agent_key;
  Check(schema::LoadOrCreateCurveKey(dir + "/agent.key", &agent_key), "agent key");
  std::vector<double> effective_ms, revoked_ms, from_send_ms;
  {
    InProcessCollector collector(dir + "/collector", agent_key.public_z85, port,
                                 [&](collector::CollectorConfig* c) {
                                   c->policy = dir + "/policy.toml";
                                   c->api_enabled = true;
                                   c->api_port = 0;
                                   c->api_tokens[api::TokenHash(tess)] = "tess";
                                   c->api_tokens[api::TokenHash(ann)] = "ann";
                                 });
    InProcessAgent agent(dir, sandbox, collector, port, db_port);
    for (int i = 0; i < 500 && collector.server->api_port() == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    uint16_t api = collector.server->api_port();
    std::string ca = dir + "/collector/api.crt";
    int pipefd[2];
    if (::pipe(pipefd) != 0) Die("pipe");
    pid_t prober = ::fork();
    if (prober == 0) {
      ::close(pipefd[0]);
      if (!agent::JoinCgroupAs(sandbox.cgroup() + "/cgroup.procs", kUid)) ::_exit(2);
      int last = -1;
      sockaddr_in a = agent::Loopback4(db_port);
      timespec pause{0, 100000};
      while (true) {
        int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 ? 1 : 0;
        ::close(s);
        if (ok != last) {
          timespec now;
          ::clock_gettime(CLOCK_MONOTONIC, &now);
          int64_t msg[2] = {ok, now.tv_sec * 1'000'000'000LL + now.tv_nsec};
          if (::write(pipefd[1], msg, sizeof(msg)) != sizeof(msg)) ::_exit(0);
          last = ok;
        }
        ::nanosleep(&pause, nullptr);
      }
    }
    ::close(pipefd[1]);
    // The next change to `want`, with its time (steady_clock is CLOCK_MONOTONIC).
    auto next_change = [&](int want) {
      int64_t msg[2] = {0, 0};
      do {
        if (::read(pipefd[0], msg, sizeof(msg)) != sizeof(msg)) Die("the prober stopped");
      } while (msg[0] != want);
      return Clock::time_point(std::chrono::nanoseconds(msg[1]));
    };
    next_change(0);  // denied before anything is approved
    auto call = [&](const std::string& target, const std::string& token, const std::string& body) {
      auto r =
          latch::testing::HttpsCall(api, ca, boost::beast::http::verb::post, target, token, body);
      if (r.status != 200 && r.status != 201)
        Die(target + ": " + std::to_string(r.status) + " " + r.body);
      return nlohmann::json::parse(r.body);
    };
    for (int i = 0; i < n; ++i) {
      auto req =
          call("/v1/requests", tess, R"({"resource":"db","duration":"10m","reason":"bench"})");
      std::string id = std::to_string(req["id"].get<uint64_t>());
      auto sent = Clock::now();
      auto approved = call("/v1/requests/" + id + "/approve", ann, "{}");
      auto t0 = Clock::now();
      auto allowed_at = next_change(1);
      effective_ms.push_back(std::chrono::duration<double, std::milli>(allowed_at - t0).count());
      from_send_ms.push_back(std::chrono::duration<double, std::milli>(allowed_at - sent).count());
      std::string grant = std::to_string(approved["grant_id"].get<uint64_t>());
      call("/v1/grants/" + grant + "/revoke", ann, "{}");
      auto t1 = Clock::now();
      auto denied_at = next_change(0);
      revoked_ms.push_back(std::chrono::duration<double, std::milli>(denied_at - t1).count());
    }
    ::kill(prober, SIGKILL);  // our own child, by its id
    ::waitpid(prober, nullptr, 0);
    ::close(pipefd[0]);
  }
  stop = true;
  {
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = agent::Loopback4(db_port);
    ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    ::close(s);
  }
  acceptor.join();
  ::close(listener);
  UninstallAgent(sandbox);
  fs::remove_all(dir);
  ReportLatency("approve answered -> connect succeeds on the host", effective_ms);
  ReportLatency("approve sent -> connect succeeds on the host", from_send_ms);
  ReportLatency("revoke answered -> connect refused on the host", revoked_ms);
  std::printf("  (a negative figure: the host took the grant before the API's answer arrived)\n");
}

void LossyLinkDelivery(int seconds, int rate) {
  std::printf("lossy link: %d records/s for %d s, 20%% packet loss and 100 ms each way\n", rate,
              seconds);
  std::string dir = TempDir("/tmp/latch-lossy-bench");
  testing::LossyDeliveryResult r = testing::RunLossyDelivery(dir, seconds, rate, {});
  fs::remove_all(dir);
  if (!r.error.empty()) Die("lossy link: " + r.error);
  auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  std::printf("  made %llu records; acknowledged %llu; the last %.1f s after it was made\n",
              u(r.made), u(r.acknowledged), r.drain_secs);
  std::printf(
      "  collector received %llu records: %.2f per record made (appended %llu, duplicates %llu, "
      "out of order %llu)\n",
      u(r.received()), r.made ? static_cast<double>(r.received()) / r.made : 0.0, u(r.appended),
      u(r.duplicate), u(r.out_of_order));
  std::printf("  agent: %llu sessions, %llu batches sent, %llu receipts (%llu rejected)\n",
              u(r.link.sessions), u(r.link.batches_sent), u(r.link.receipts),
              u(r.link.receipts_rejected));
  for (const auto& [reason, n] : r.sessions_by_reason) {
    std::printf("    new session: %-40s %d\n", reason.c_str(), n);
  }
  std::printf("  link: %llu packets forwarded, %llu dropped\n", u(r.packets_forwarded),
              u(r.packets_dropped));
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t events = 1000000;
  int grants = 1000;
  int cycles = 500;
  int seconds = 20, rate = 5000;
  std::string parts = "e,g,w";
  for (int i = 1; i < argc; i += 2) {
    std::string f = argv[i];
    if (i + 1 >= argc) f = "--help";
    if (f == "--events")
      events = std::stoull(argv[i + 1]);
    else if (f == "--grants")
      grants = std::stoi(argv[i + 1]);
    else if (f == "--cycles")
      cycles = std::stoi(argv[i + 1]);
    else if (f == "--parts")
      parts = argv[i + 1];
    else if (f == "--seconds")
      seconds = std::stoi(argv[i + 1]);
    else if (f == "--rate")
      rate = std::stoi(argv[i + 1]);
    else {
      std::fprintf(stderr,
                   "usage: channel_bench [--events N] [--grants N] [--cycles N] "
                   "[--seconds N] [--rate N] [--parts e,g,w,l]\n");
      return 2;
    }
  }
  try {
    if (parts.find('e') != std::string::npos) EndToEnd(events);
    if (parts.find('g') != std::string::npos) GrantLatency(grants);
    if (parts.find('w') != std::string::npos) RequestToEffective(cycles);
    if (parts.find('l') != std::string::npos) LossyLinkDelivery(seconds, rate);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "channel_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
