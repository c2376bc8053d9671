// The lag from a checkpoint to its witnessed publication (issue 18): a
// ledger on this disk commits a batch every --every-ms; the collector's
// witnessing (collector/witnessing) sends the latest checkpoint to three
// latch-witness processes on loopback at the default cadence (1 s) and
// publishes it once a quorum (2 of 3, the default majority) cosigned. For
// each commit: the time until a witnessed checkpoint covering it was
// published. Printed beside it, from the same run: the lag until all three
// had cosigned one covering it (the witnessed checkpoint served then has
// every cosignature), and the witnesses' round trip alone.
//
//   build/tests/witness_lag_bench [--seconds N] [--every-ms M] [--interval-ms I]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "collector/ledger/entry_batch.h"
#include "collector/ledger/file_ledger.h"
#include "collector/witnessing/witnessing.h"
#include "lib/tlog/witnessed_checkpoint.h"
#include "witness_process.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace latch;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "witness_lag_bench: %s\n", what.c_str());
  std::exit(1);
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  int seconds = 60, every_ms = 50, interval_ms = 1000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int value = std::atoi(argv[i + 1]);
    if (flag == "--seconds") {
      seconds = value;
    } else if (flag == "--every-ms") {
      every_ms = value;
    } else if (flag == "--interval-ms") {
      interval_ms = value;
    } else {
      Die("unknown flag " + flag);
    }
  }
  if (seconds < 1 || every_ms < 1 || interval_ms < 10) Die("bad values");
  char tmpl[] = "/tmp/latch-witness-lag-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) Die("mkdtemp");
  const std::string dir = tmpl;
  constexpr char kOrigin[] = "lag.example/ledger";
  if (!ledger::FileLedger::Create(dir + "/ledger", kOrigin).ok()) Die("ledger");
  std::unique_ptr<ledger::FileLedger> l;
  if (!ledger::FileLedger::Open(dir + "/ledger", ledger::FileLedger::Mode::kReadWrite, &l).ok()) {
    Die("open ledger");
  }
  std::vector<std::unique_ptr<testing::WitnessProcess>> witnesses;
  collector::WitnessingOptions options;
  for (int i = 0; i < 3; ++i) {
    auto w = std::make_unique<testing::WitnessProcess>();
    std::string error;
    if (!w->Configure(dir + "/w" + std::to_string(i), "witness.example/w" + std::to_string(i),
                      {{kOrigin, l->verifier().ToString()}}, &error) ||
        !w->Start()) {
      Die("witness " + std::to_string(i) + ": " + error + w->ReadLog());
    }
    options.witnesses.push_back({w->url(), w->ca(), w->key(), std::chrono::seconds(10)});
    witnesses.push_back(std::move(w));
  }
  options.quorum = 2;
  options.interval = std::chrono::milliseconds(interval_ms);
  options.dir = dir;
  std::vector<tlog::CosignatureVerifier> keys;
  for (const auto& e : options.witnesses) keys.push_back(e.key);

  std::unique_ptr<collector::Witnessing> witnessing;
  if (!collector::Witnessing::Open(options, *l, &witnessing).ok()) Die("witnessing");
  witnessing->SetActive(true);

  // Commits on this thread; publications watched on another, every 1 ms.
  struct Commit {
    uint64_t size;
    Clock::time_point at;
  };
  std::vector<Commit> commits;
  struct Seen {
    uint64_t size;
    size_t cosignatures;
    Clock::time_point at;
  };
  std::vector<Seen> seen;
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    uint64_t size = 0;
    size_t count = 0;
    while (!done) {
      const auto p = witnessing->published();
      if (p.size != size || p.cosignatures != count) {
        size = p.size;
        count = p.cosignatures;
        seen.push_back({size, count, Clock::now()});
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  const auto start = Clock::now();
  for (uint64_t n = 0; Clock::now() - start < std::chrono::seconds(seconds); ++n) {
    ledger::EntryBatch batch;
    for (int i = 0; i < 100; ++i) {
      if (!batch.Add("entry " + std::to_string(n) + "." + std::to_string(i)).ok()) Die("add");
    }
    const ledger::EntryBatch* batches[] = {&batch};
    uint64_t first = 0;
    if (!l->Commit(batches, &first).ok()) Die("commit");
    commits.push_back({l->size(), Clock::now()});
    std::this_thread::sleep_for(std::chrono::milliseconds(every_ms));
  }
  // Time for the last commits to be witnessed.
  std::this_thread::sleep_for(std::chrono::milliseconds(3 * interval_ms + 500));
  done = true;
  watcher.join();

  std::vector<double> quorum_lag, all_lag;
  size_t unwitnessed = 0;
  for (const Commit& c : commits) {
    auto q =
        std::find_if(seen.begin(), seen.end(), [&](const Seen& s) { return s.size >= c.size; });
    auto a = std::find_if(seen.begin(), seen.end(),
                          [&](const Seen& s) { return s.size >= c.size && s.cosignatures == 3; });
    if (q == seen.end()) {
      unwitnessed++;
      continue;
    }
    quorum_lag.push_back(Ms(q->at - c.at));
    if (a != seen.end()) all_lag.push_back(Ms(a->at - c.at));
  }
  // The published note checks out as a client would check it.
  const auto p = witnessing->published();
  tlog::Checkpoint cp;
  if (!tlog::OpenWitnessedCheckpoint(p.note, l->verifier(), keys, 2, &cp).ok()) {
    Die("the published witnessed checkpoint does not verify");
  }
  std::printf(
      "witnessed publication lag, 3 witnesses on loopback (latch-witness, HTTPS), quorum 2,\n"
      "cadence %d ms, a commit of 100 entries every %d ms for %d s (%zu commits, %zu "
      "publications, %zu never witnessed):\n",
      interval_ms, every_ms, seconds, commits.size(), seen.size(), unwitnessed);
  std::printf(
      "  commit -> published with a quorum (2 of 3): p50 %.0f ms, p99 %.0f ms, max %.0f ms\n",
      Percentile(quorum_lag, 0.5), Percentile(quorum_lag, 0.99), Percentile(quorum_lag, 1.0));
  std::printf(
      "  commit -> published with all 3 cosignatures: p50 %.0f ms, p99 %.0f ms (%zu of %zu)\n",
      Percentile(all_lag, 0.5), Percentile(all_lag, 0.99), all_lag.size(), commits.size());
  std::printf("  rounds %llu; the cadence alone would give a mean of about %d ms\n",
              static_cast<unsigned long long>(witnessing->rounds()), interval_ms / 2);
  witnessing.reset();
  for (auto& w : witnesses) w->Kill();
  std::filesystem::remove_all(dir);
  return unwitnessed == commits.size() ? 1 : 0;
}
