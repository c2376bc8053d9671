// query_bench: the events query over a large ledger, and whether the index
// keeps up with the ledger, in one run.
//
//   build/tests/query_bench [--events N] [--hosts H] [--queries Q] [--dir D]
//
// 1. Appends N decision records (H hosts round-robin, one every millisecond
//    of event time, a workflow record every 10,000) to a fresh ledger in
//    batches of 65,536, timing encoding and durable append: the ledger's
//    append rate for these records.
// 2. Builds the events index from that ledger from nothing, as a collector
//    does at start-up on a ledger it has no index for and `latch-ledger
//    reindex` does (a bulk load: indexes built at the end), timing it: the
//    index's catch-up rate, against the append rate.
// 3. Builds it again from nothing as the follower keeps it level with a
//    growing ledger: every index kept up to date in each transaction (of
//    the follower's size). Its rate, against the append rate: whether the index
//    keeps up with a ledger that grows this fast for good.
// 4. Q queries, each one host over a random one-minute window (about 600
//    matching events at the defaults) returning the first 100 with their
//    entries and inclusion proofs against the current checkpoint, as the API
//    answers them: p50, p99 and max latency. Every answer is checked: 100
//    results, each proof verifying against the signed checkpoint.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "collector/index/event_index.h"
#include "collector/index/event_query.h"
#include "collector/index/index_follower.h"
#include "collector/ledger/file_ledger.h"
#include "schemas/canonical.h"
#include "schemas/event_record.h"
#include "schemas/record_codec.h"
#include "schemas/workflow.capnp.h"

namespace {

using namespace latch;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr int64_t kT0 = 1'800'000'000'000'000'000;
constexpr int64_t kMs = 1'000'000;

double Secs(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "query_bench: %s\n", what.c_str());
  std::exit(1);
}
void Check(const Status& s, const std::string& what) {
  if (!s.ok()) Die(what + ": " + s.ToString());
}

std::string HostName(uint64_t h) { return "host-" + std::to_string(h); }

// Ledger entry i: a decision on host i % hosts at kT0 + i ms, or every
// 10,000th a workflow record (a policy load), as a real ledger mixes them.
std::string Entry(uint64_t i, uint64_t hosts) {
  ledger::LedgerRecord r;
  r.event_time_ns = kT0 + static_cast<int64_t>(i) * kMs;
  r.receive_time_ns = r.event_time_ns + kMs;
  if (i % 10000 == 9999) {
    capnp::MallocMessageBuilder m;
    auto a = m.initRoot<schema::WorkflowAction>();
    a.setActor("collector");
    auto p = a.initPolicyLoaded();
    p.setSha256(std::string(64, 'a'));
    p.setSource("/etc/latch/policy.toml");
    r.kind = ledger::RecordKind::kWorkflow;
    r.payload = schema::CanonicalBytes(a.asReader());
  } else {
    latch_decision_event e{};
    e.ktime_boot_ns = i * kMs;
    e.pid = e.tgid = 1000 + static_cast<uint32_t>(i % 5000);
    e.uid = 1000 + static_cast<uint32_t>(i % 50);
    e.gid = e.uid;
    e.cgroup_id = 4242;
    std::memcpy(e.comm, "psql", 4);
    e.family = 2;
    e.protocol = 6;
    e.addr[10] = e.addr[11] = 0xff;
    e.addr[12] = 10;
    e.addr[15] = static_cast<uint8_t>(i % 7);
    e.port = 5432;
    e.resource_id = 1 + static_cast<uint32_t>(i % 3);
    e.verdict = i % 4 == 0 ? LATCH_VERDICT_DENY : LATCH_VERDICT_AUDIT_ALLOW;
    e.hook = LATCH_HOOK_CONNECT4;
    r.kind = ledger::RecordKind::kEvent;
    r.host_id = HostName(i % hosts);
    r.agent_boot_id = std::string(16, static_cast<char>('a' + i % hosts % 26));
    r.sequence = i / hosts + 1;
    r.payload = record::EncodeDecisionEvent(e);
  }
  std::string bytes;
  Check(ledger::EncodeRecord(r, &bytes), "encode");
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t events = 10'000'000, hosts = 100, queries = 1000;
  std::string base = "/tmp";
  for (int i = 1; i < argc; i += 2) {
    std::string f = argv[i];
    if (i + 1 >= argc) Die("usage: query_bench [--events N] [--hosts H] [--queries Q] [--dir D]");
    if (f == "--events") {
      events = std::stoull(argv[i + 1]);
    } else if (f == "--hosts") {
      hosts = std::stoull(argv[i + 1]);
    } else if (f == "--queries") {
      queries = std::stoull(argv[i + 1]);
    } else if (f == "--dir") {
      base = argv[i + 1];
    } else {
      Die("usage: query_bench [--events N] [--hosts H] [--queries Q] [--dir D]");
    }
  }
  if (hosts == 0 || events < hosts * 1000) Die("--events must be at least 1000 per host");
  std::string dir = base + "/latch-query-bench-" + std::to_string(::getpid());
  fs::create_directories(dir);
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{dir};

  std::printf("query_bench: %llu events over %llu hosts, %llu queries, in %s\n",
              static_cast<unsigned long long>(events), static_cast<unsigned long long>(hosts),
              static_cast<unsigned long long>(queries), dir.c_str());
  Check(ledger::FileLedger::Create(dir + "/ledger", "bench.example/ledger"), "create");
  std::unique_ptr<ledger::Ledger> ledger;
  Check(ledger::FileLedger::Open(dir + "/ledger", ledger::FileLedger::Mode::kReadWrite, &ledger),
        "open");

  // 1. Append.
  auto start = Clock::now();
  ledger::EntryBatch batch;
  for (uint64_t i = 0; i < events; ++i) {
    Check(batch.Add(Entry(i, hosts)), "batch");
    if (batch.size() == 65536 || i + 1 == events) {
      const ledger::EntryBatch* b[] = {&batch};
      uint64_t first = 0;
      Check(ledger->Commit(b, &first), "commit");
      batch.Clear();
    }
  }
  double append_secs = Secs(start);
  double append_rate = static_cast<double>(events) / append_secs;
  std::printf("append: %llu records encoded and durably appended in %.1f s: %.0f records/s\n",
              static_cast<unsigned long long>(events), append_secs, append_rate);

  // 2. Index from nothing.
  std::string index_path = dir + "/index.sqlite";
  auto file_mib = [](const std::string& path) {
    std::error_code ec;
    uint64_t n = 0;
    for (const char* suffix : {"", "-wal"}) {
      uint64_t size = fs::file_size(path + suffix, ec);
      if (!ec) n += size;
    }
    return static_cast<double>(n) / (1 << 20);
  };
  std::unique_ptr<index::EventIndex> idx;
  Check(index::EventIndex::Open(
            index_path, "bench.example/ledger",
            [&](uint64_t size, tlog::Hash* root) { return ledger->RootAt(size, root); }, &idx),
        "index open");
  start = Clock::now();
  Check(index::IndexLedger(*ledger, idx.get()), "index");
  double index_secs = Secs(start);
  double index_rate = static_cast<double>(events) / index_secs;
  std::printf(
      "index catch-up (bulk load): %llu entries in %.1f s: %.0f entries/s (%.2f x the append "
      "rate)\n",
      static_cast<unsigned long long>(idx->size()), index_secs, index_rate,
      index_rate / append_rate);

  // 3. Index as the follower does, every index maintained in each transaction.
  {
    std::string follow_path = dir + "/index-follow.sqlite";
    std::unique_ptr<index::EventIndex> follow;
    Check(index::EventIndex::Open(
              follow_path, "bench.example/ledger",
              [&](uint64_t size, tlog::Hash* root) { return ledger->RootAt(size, root); }, &follow),
          "follow index open");
    index::IndexOptions incremental;
    // The follower's own transaction size (IndexOptions' default).
    incremental.bulk_load_minimum = UINT64_MAX;
    start = Clock::now();
    Check(index::IndexLedger(*ledger, follow.get(), incremental), "follow index");
    double follow_secs = Secs(start);
    double follow_rate = static_cast<double>(events) / follow_secs;
    std::printf(
        "index following (transactions of %llu, indexes kept): %llu entries in %.1f s: %.0f "
        "entries/s (%.2f x the append rate); index %.0f MiB\n",
        static_cast<unsigned long long>(incremental.batch),
        static_cast<unsigned long long>(follow->size()), follow_secs, follow_rate,
        follow_rate / append_rate, file_mib(follow_path));
    follow.reset();
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(follow_path + suffix, ec);
  }
  std::printf(
      "  sizes: ledger %.0f MiB, index %.0f MiB\n",
      [&] {
        uint64_t n = 0;
        for (const auto& e : fs::recursive_directory_iterator(dir + "/ledger"))
          if (e.is_regular_file()) n += e.file_size();
        return static_cast<double>(n) / (1 << 20);
      }(),
      file_mib(index_path));

  // 4. Queries.
  tlog::NoteVerifier key;
  Check(tlog::NoteVerifier::Parse(ledger->verifier().ToString(), &key), "vkey");
  std::mt19937_64 rng(42);
  int64_t span_ms = static_cast<int64_t>(events) - 60'000 - 1;
  std::vector<double> ms;
  uint64_t results = 0;
  for (uint64_t q = 0; q < queries; ++q) {
    index::EventQuery query;
    query.filter.host = HostName(rng() % hosts);
    query.filter.since_ns =
        kT0 + static_cast<int64_t>(rng() % static_cast<uint64_t>(span_ms)) * kMs;
    query.filter.until_ns = query.filter.since_ns + 60'000 * kMs;
    query.limit = 100;
    nlohmann::json answer;
    auto t0 = Clock::now();
    Check(index::AnswerEventQuery(*ledger, index_path, idx->size(), query, &answer), "query");
    std::string body = answer.dump();  // what the API sends
    ms.push_back(Secs(t0) * 1e3);
    std::vector<client::VerifiedEvent> verified;
    Check(client::VerifyEventAnswer(answer, key, &verified), "verify");
    if (verified.size() != 100) Die("a query returned " + std::to_string(verified.size()));
    for (const auto& v : verified) {
      if (v.view.host != *query.filter.host || v.view.time_ns < query.filter.since_ns ||
          v.view.time_ns >= query.filter.until_ns) {
        Die("a result does not match its query");
      }
    }
    results += verified.size();
  }
  std::sort(ms.begin(), ms.end());
  auto pct = [&](double p) {
    return ms[std::min(ms.size() - 1, static_cast<size_t>(p * ms.size()))];
  };
  std::printf(
      "query (one host, one-minute window, first 100 with entries and inclusion proofs, as JSON):\n"
      "  p50 %.2f ms, p99 %.2f ms, max %.2f ms over %zu queries; %llu results, every proof "
      "verified\n",
      pct(0.5), pct(0.99), ms.back(), ms.size(), static_cast<unsigned long long>(results));
  return 0;
}
