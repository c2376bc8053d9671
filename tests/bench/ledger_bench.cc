// ledger_bench: durable append throughput of the ledger against the floor
// any RFC 6962 log must pay for the same entries, in one run, plus verify
// throughput and memory as the log grows.
//
// The floor: write the same entry bytes to a plain file with the same fsync
// cadence (one fdatasync per batch) and compute one leaf hash and one
// interior-node hash per entry, on one thread, with the same SHA-256 code.
//
//   build/tests/ledger_bench [--entries N] [--entry-size B] [--rounds R] [--dir D]
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "collector/ledger/batcher.h"
#include "collector/ledger/file_ledger.h"
#include "collector/ledger/verifier.h"
#include "lib/tlog/merkle_hash.h"

namespace {

using namespace latch;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// Resident and peak resident memory, in MiB, from /proc/self/status.
std::pair<double, double> MemoryMiB() {
  std::ifstream in("/proc/self/status");
  std::string line;
  double rss = 0;
  double hwm = 0;
  while (std::getline(in, line)) {
    if (line.starts_with("VmRSS:")) rss = std::stod(line.substr(6)) / 1024;
    if (line.starts_with("VmHWM:")) hwm = std::stod(line.substr(6)) / 1024;
  }
  return {rss, hwm};
}

// Entry i: a decimal counter, then filler to the requested size.
void MakeEntry(uint64_t i, size_t size, std::string* out) {
  out->assign(size, 'a' + static_cast<char>(i % 26));
  std::string n = std::to_string(i);
  std::memcpy(out->data(), n.data(), std::min(n.size(), size));
}

void Die(const Status& s) {
  std::fprintf(stderr, "ledger_bench: %s\n", s.ToString().c_str());
  std::exit(1);
}

double RunFloor(const std::string& path, uint64_t entries, size_t entry_size, size_t batch) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) Die(Status::FromErrno("open " + path, errno));
  tlog::MerkleHasher hasher;
  std::vector<uint8_t> buf;
  std::string entry;
  tlog::Hash acc{};
  auto start = Clock::now();
  for (uint64_t i = 0; i < entries; ++i) {
    MakeEntry(i, entry_size, &entry);
    buf.push_back(static_cast<uint8_t>(entry.size() >> 8));
    buf.push_back(static_cast<uint8_t>(entry.size()));
    buf.insert(buf.end(), entry.begin(), entry.end());
    tlog::Hash leaf = hasher.Leaf({reinterpret_cast<const uint8_t*>(entry.data()), entry.size()});
    acc = hasher.Node(acc, leaf);
    if ((i + 1) % batch == 0 || i + 1 == entries) {
      if (::write(fd, buf.data(), buf.size()) != static_cast<ssize_t>(buf.size()) ||
          ::fdatasync(fd) != 0) {
        Die(Status::FromErrno("write " + path, errno));
      }
      buf.clear();
    }
  }
  double secs = Seconds(start);
  ::close(fd);
  if (acc[0] == 0x42 && acc[1] == 0x42 && acc[2] == 0x42) std::printf(" ");  // keep `acc` live
  return secs;
}

// Appends `entries` through the Batcher with default options; returns seconds.
double RunLedger(const std::string& dir, uint64_t entries, size_t entry_size,
                 const ledger::BatcherOptions& options,
                 std::vector<std::pair<uint64_t, double>>* rss_at) {
  std::filesystem::remove_all(dir);
  Status s = ledger::FileLedger::Create(dir, "bench.example/log");
  if (!s.ok()) Die(s);
  std::unique_ptr<ledger::Ledger> led;
  s = ledger::FileLedger::Open(dir, ledger::FileLedger::Mode::kReadWrite, &led);
  if (!s.ok()) Die(s);

  constexpr size_t kGroup = 1024;  // entries per submission, like an agent's batch
  std::atomic<uint64_t> acked{0};
  std::atomic<bool> failed{false};
  // Resident memory at every million entries, to show it stays flat.
  uint64_t next_report = 1'000'000;
  std::string entry;
  auto start = Clock::now();
  {
    ledger::Batcher batcher(*led, options);
    for (uint64_t i = 0; i < entries;) {
      ledger::EntryBatch group;
      for (size_t k = 0; k < kGroup && i < entries; ++k, ++i) {
        MakeEntry(i, entry_size, &entry);
        if (!group.Add(entry).ok()) Die(Status::InvalidArgument("entry too large"));
      }
      uint64_t n = group.size();
      batcher.Submit(std::move(group), [&acked, &failed, n](const Status& st, uint64_t) {
        if (!st.ok()) failed = true;
        acked += n;
      });
      if (i >= next_report) {
        rss_at->emplace_back(i, MemoryMiB().first);
        next_report += 1'000'000;
      }
    }
  }  // waits for the last batch to be durable
  double secs = Seconds(start);
  if (failed || acked != entries || led->size() != entries) Die(Status::IoError("append failed"));
  return secs;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t entries = 1'000'000;
  int rounds = 3;
  size_t entry_size = 200;
  std::string base = "/var/tmp";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--entries")
      entries = std::stoull(argv[i + 1]);
    else if (flag == "--entry-size")
      entry_size = std::stoull(argv[i + 1]);
    else if (flag == "--dir")
      base = argv[i + 1];
    else if (flag == "--rounds")
      rounds = std::stoi(argv[i + 1]);
    else {
      std::fprintf(stderr,
                   "usage: ledger_bench [--entries N] [--entry-size B] [--rounds R] [--dir D]\n");
      return 2;
    }
  }
  if (argc % 2 == 0) {
    std::fprintf(stderr,
                 "usage: ledger_bench [--entries N] [--entry-size B] [--rounds R] [--dir D]\n");
    return 2;
  }
  std::string work = base + "/latch-ledger-bench-" + std::to_string(::getpid());
  std::filesystem::create_directories(work);
  ledger::BatcherOptions options;  // the defaults, as the collector runs them
  std::printf(
      "ledger_bench: %llu entries of %zu bytes, batches of up to %zu entries / %lld ms, in %s\n",
      static_cast<unsigned long long>(entries), entry_size, options.max_batch_entries,
      static_cast<long long>(options.max_batch_age.count() / 1000), work.c_str());

  // Rounds alternate floor and ledger on fresh files; the best round of each
  // is compared. (The first writes of a run pay for fresh memory pages on
  // this VM, whichever of the two goes first.)
  std::vector<std::pair<uint64_t, double>> rss_at;
  double floor_secs = 1e9;
  double ledger_secs = 1e9;
  for (int round = 1; round <= rounds; ++round) {
    double f = RunFloor(work + "/floor", entries, entry_size, options.max_batch_entries);
    std::filesystem::remove(work + "/floor");
    rss_at.clear();
    double l = RunLedger(work + "/ledger", entries, entry_size, options, &rss_at);
    std::printf("round %d: floor %.0f entries/s, ledger %.0f entries/s\n", round,
                static_cast<double>(entries) / f, static_cast<double>(entries) / l);
    floor_secs = std::min(floor_secs, f);
    ledger_secs = std::min(ledger_secs, l);
  }
  auto batches = (entries + options.max_batch_entries - 1) / options.max_batch_entries;

  auto start = Clock::now();
  ledger::VerifyResult verified;
  std::unique_ptr<ledger::Ledger> reader;
  Status s =
      ledger::FileLedger::Open(work + "/ledger", ledger::FileLedger::Mode::kReadOnly, &reader);
  if (s.ok()) s = ledger::VerifyLog(*reader, reader->verifier(), &verified);
  if (!s.ok()) Die(s);
  double verify_secs = Seconds(start);
  auto [rss, peak] = MemoryMiB();

  double floor_rate = static_cast<double>(entries) / floor_secs;
  double ledger_rate = static_cast<double>(entries) / ledger_secs;
  std::printf("best of %d rounds each:\n", rounds);
  std::printf(
      "floor   (plain file + fsync per %zu, 1 leaf + 1 node hash per entry): %10.0f entries/s  "
      "(%.2f s)\n",
      options.max_batch_entries, floor_rate, floor_secs);
  std::printf(
      "ledger  (durable, signed checkpoint per batch, >= %llu batches):       %10.0f entries/s  "
      "(%.2f s)\n",
      static_cast<unsigned long long>(batches), ledger_rate, ledger_secs);
  std::printf("ratio   ledger / floor: %.2f\n", ledger_rate / floor_rate);
  std::printf(
      "verify  (full offline recomputation, %llu tiles):                    %10.0f entries/s  "
      "(%.2f s)\n",
      static_cast<unsigned long long>(verified.tiles_checked),
      static_cast<double>(entries) / verify_secs, verify_secs);
  for (auto [at, mib] : rss_at) {
    if (rss_at.size() < 3) break;  // only worth printing for long runs
    std::printf("memory  resident after %9llu entries submitted: %.1f MiB\n",
                static_cast<unsigned long long>(at), mib);
  }
  std::printf("memory  resident at end: %.1f MiB, peak: %.1f MiB\n", rss, peak);
  reader.reset();
  std::filesystem::remove_all(work);
  return 0;
}
