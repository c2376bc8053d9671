// start_bench: how long latch-collector takes from start to ready on a large
// ledger, with and without its state snapshot, in one run.
//
//   build/tests/start_bench [--entries N[,N...]] [--dir D] [--entry-by-entry N]
//
// For each N: a collector data directory is made (keys, an empty ledger),
// then N records are appended straight to its ledger in batches of 65,536:
// decisions from 100 hosts (each its own boot and sequence) and, every
// 1,000th, a request (requestCreated), so the derived state has sequence
// marks and a request book to restore. Then CollectorServer::Open, which is
// start-up up to serving (Run only binds its sockets), is timed:
//   1. with no snapshot: the whole ledger replayed, a bundle at a time;
//   2. with the snapshot (1.) wrote at its start: nothing replayed;
//   3. after 250,000 more entries (the default snapshot_every_entries, the
//      most a start ever replays after a snapshot): the tail replayed.
// Each start's derived state is checked equal to the full replay's.
// --entry-by-entry N also times the old replay's reading on the first N
// entries (Ledger::ReadEntry for every entry, which reads its 256-entry
// bundle each time), the baseline issue 14 names.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "collector/ingest/collector_server.h"
#include "collector/ledger/file_ledger.h"
#include "lib/logging/logger.h"
#include "schemas/canonical.h"
#include "schemas/event_record.h"
#include "schemas/record_codec.h"
#include "schemas/workflow.capnp.h"

namespace {

using namespace latch;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr uint64_t kHosts = 100;
constexpr uint64_t kTail = 250'000;

double Secs(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "start_bench: %s\n", what.c_str());
  std::exit(1);
}
void Check(const Status& s, const std::string& what) {
  if (!s.ok()) Die(what + ": " + s.ToString());
}

// Ledger entry i: a decision of host i % 100, or every 1,000th a request.
std::string Record(uint64_t i) {
  ledger::LedgerRecord r;
  r.event_time_ns = r.receive_time_ns = 1'800'000'000'000'000'000 + static_cast<int64_t>(i);
  if (i % 1000 == 999) {
    capnp::MallocMessageBuilder m;
    auto a = m.initRoot<schema::WorkflowAction>();
    a.setActor("tess");
    auto c = a.initRequestCreated();
    c.setRequestId(i / 1000 + 1);
    c.setRequester("tess");
    c.setResource("db");
    c.setDurationNs(1'800'000'000'000);
    c.setReason("OPS-" + std::to_string(i));
    c.setPendingUntilNs(r.receive_time_ns + 3'600'000'000'000);
    r.kind = ledger::RecordKind::kWorkflow;
    r.payload = schema::CanonicalBytes(a.asReader());
  } else {
    latch_decision_event e{};
    e.ktime_boot_ns = i;
    e.pid = e.tgid = 1000 + static_cast<uint32_t>(i % 5000);
    e.uid = 1000 + static_cast<uint32_t>(i % 50);
    std::memcpy(e.comm, "psql", 4);
    e.family = 2;
    e.protocol = 6;
    e.port = 5432;
    e.resource_id = 1;
    e.verdict = LATCH_VERDICT_DENY;
    e.hook = LATCH_HOOK_CONNECT4;
    r.kind = ledger::RecordKind::kEvent;
    r.host_id = "host-" + std::to_string(i % kHosts);
    r.agent_boot_id = std::string(15, 'b') + static_cast<char>(i % kHosts);
    r.sequence = i / kHosts + 1;
    r.payload = record::EncodeDecisionEvent(e);
  }
  std::string bytes;
  Check(ledger::EncodeRecord(r, &bytes), "encode");
  return bytes;
}

void Append(const std::string& ledger_dir, uint64_t from, uint64_t to) {
  std::unique_ptr<ledger::Ledger> l;
  Check(ledger::FileLedger::Open(ledger_dir, ledger::FileLedger::Mode::kReadWrite, &l),
        "open ledger");
  for (uint64_t i = from; i < to;) {
    ledger::EntryBatch batch;
    for (uint64_t end = std::min(to, i + 65536); i < end; ++i) Check(batch.Add(Record(i)), "add");
    const ledger::EntryBatch* b[] = {&batch};
    uint64_t first = 0;
    Check(l->Commit(b, &first), "commit");
  }
}

struct Start {
  double seconds = 0;
  uint64_t replayed = 0;
  nlohmann::json state;
};

Start Open(const collector::CollectorConfig& config) {
  std::unique_ptr<collector::CollectorServer> server;
  auto t = Clock::now();
  Check(collector::CollectorServer::Open(config, &server), "collector open");
  Start out{Secs(t), server->counters().start_replayed_entries.load(), server->DerivedState()};
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<uint64_t> sizes = {1'000'000, 10'000'000};
  uint64_t entry_by_entry = 0;
  std::string base = "/tmp";
  const char* usage = "usage: start_bench [--entries N[,N...]] [--dir D] [--entry-by-entry N]";
  for (int i = 1; i < argc; i += 2) {
    std::string f = argv[i];
    if (i + 1 >= argc) Die(usage);
    if (f == "--entries") {
      sizes.clear();
      std::stringstream list(argv[i + 1]);
      for (std::string n; std::getline(list, n, ',');) sizes.push_back(std::stoull(n));
    } else if (f == "--dir") {
      base = argv[i + 1];
    } else if (f == "--entry-by-entry") {
      entry_by_entry = std::stoull(argv[i + 1]);
    } else {
      Die(usage);
    }
  }
  logging::Default().set_level(logging::Level::kError);
  std::printf("%12s %10s %14s %14s %16s %12s\n", "entries", "append s", "full replay s",
              "snapshot s", "+250k tail s", "speed-up");
  for (uint64_t n : sizes) {
    const std::string dir = base + "/latch-start-bench-" + std::to_string(::getpid());
    fs::remove_all(dir);
    collector::CollectorConfig config;
    config.data_dir = dir;
    config.origin = "bench.example/ledger";
    config.endpoints = {"tcp://127.0.0.1:1"};  // never bound: Open does not bind
    {
      std::unique_ptr<collector::CollectorServer> first;
      Check(collector::CollectorServer::Open(config, &first), "collector create");
    }
    auto t = Clock::now();
    Append(dir + "/ledger", 0, n);
    const double append = Secs(t);
    fs::remove(dir + "/state.snapshot");

    Start full = Open(config);  // writes a snapshot at its start
    Start snap = Open(config);
    if (snap.state != full.state) Die("the start from the snapshot reached another state");
    Append(dir + "/ledger", n, n + kTail);
    Start tail = Open(config);
    fs::remove(dir + "/state.snapshot");
    Start tail_full = Open(config);
    if (tail.state != tail_full.state) Die("the start from snapshot + tail reached another state");
    std::printf("%12llu %10.2f %14.2f %14.3f %16.3f %11.0fx\n", static_cast<unsigned long long>(n),
                append, full.seconds, snap.seconds, tail.seconds, full.seconds / snap.seconds);
    std::printf("%12s replayed: full %llu, from the snapshot %llu, with the tail %llu\n", "",
                static_cast<unsigned long long>(full.replayed),
                static_cast<unsigned long long>(snap.replayed),
                static_cast<unsigned long long>(tail.replayed));
    if (entry_by_entry > 0) {
      std::unique_ptr<ledger::Ledger> l;
      Check(ledger::FileLedger::Open(dir + "/ledger", ledger::FileLedger::Mode::kReadOnly, &l),
            "open");
      const uint64_t m = std::min(entry_by_entry, l->size());
      std::string entry;
      ledger::LedgerRecord record;
      auto t0 = Clock::now();
      for (uint64_t i = 0; i < m; ++i) {
        Check(l->ReadEntry(i, &entry), "read");
        Check(ledger::DecodeRecord(entry, &record), "decode");
      }
      const double old_way = Secs(t0);
      std::printf(
          "%12s entry by entry (the old replay's reading), %llu entries: %.2f s, %.2f us/entry\n",
          "", static_cast<unsigned long long>(m), old_way, old_way * 1e6 / static_cast<double>(m));
    }
    std::fflush(stdout);
    fs::remove_all(dir);
  }
  return 0;
}
