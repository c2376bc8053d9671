// Appends to a ledger until killed, printing "<first> <count>" for every
// submission once the ledger has acknowledged it as durable. Entry i is
// always CrashEntry(i), so whoever reopens the ledger can check every byte.
#include <unistd.h>

#include <cstdio>
#include <random>
#include <string>

#include "collector/ledger/batcher.h"
#include "collector/ledger/file_ledger.h"
#include "crash_entry.h"

int main(int argc, char** argv) {
  using namespace latch::ledger;
  if (argc != 2) {
    std::fprintf(stderr, "usage: ledger_crash_writer DIR\n");
    return 2;
  }
  std::unique_ptr<Ledger> ledger;
  latch::Status s = FileLedger::Open(argv[1], FileLedger::Mode::kReadWrite, &ledger);
  if (!s.ok()) {
    std::fprintf(stderr, "crash writer: %s\n", s.ToString().c_str());
    return 1;
  }
  BatcherOptions options;
  options.max_batch_entries = 256;  // many small batches: many commit points to die between
  options.max_batch_age = std::chrono::milliseconds(1);
  options.max_pending_entries = 2048;
  Batcher batcher(*ledger, options);
  std::mt19937_64 rng(static_cast<uint64_t>(::getpid()));
  uint64_t next = ledger->size();
  while (true) {
    EntryBatch batch;
    uint64_t n = 1 + rng() % 100;
    for (uint64_t i = next; i < next + n; ++i) {
      if (!batch.Add(CrashEntry(i)).ok()) return 1;
    }
    uint64_t expected_first = next;
    next += n;
    batcher.Submit(std::move(batch), [expected_first, n](const latch::Status& st, uint64_t first) {
      if (!st.ok() || first != expected_first) std::_Exit(3);
      char line[64];
      int len =
          std::snprintf(line, sizeof(line), "%llu %llu\n", static_cast<unsigned long long>(first),
                        static_cast<unsigned long long>(n));
      // One write(2) per acknowledgement: nothing sits in a stdio buffer when SIGKILL lands.
      if (::write(STDOUT_FILENO, line, static_cast<size_t>(len)) != len) std::_Exit(4);
    });
  }
}
