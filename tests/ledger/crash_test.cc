// kill -9 of an appending process at random moments, many times over: after
// each kill the ledger opens, holds everything that was acknowledged (every
// byte as written), its torn tail is cut cleanly, and verify passes.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>
#include <sstream>
#include <thread>

#include "collector/ledger/file_ledger.h"
#include "collector/ledger/verifier.h"
#include "crash_entry.h"
#include "temp_dir.h"

namespace latch::ledger {
namespace {

// Runs the writer and kills it `delay` after it first acknowledged an append
// (or, if !after_first_ack, `delay` after it was started: a kill during
// start-up and recovery). Returns the end (first index past) of everything it
// reported as acknowledged.
uint64_t RunAndKill(const std::string& dir, bool after_first_ack, std::chrono::microseconds delay) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    ::execl(LATCH_CRASH_WRITER, LATCH_CRASH_WRITER, dir.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  if (after_first_ack) {
    // Wait (bounded) for the first acknowledgement, keeping what was read.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (out.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fds[0], POLLIN, 0};
      if (::poll(&p, 1, 100) == 1 && (n = ::read(fds[0], buf, sizeof(buf))) > 0) {
        out.append(buf, static_cast<size_t>(n));
      }
    }
    EXPECT_NE(out.find('\n'), std::string::npos) << "the writer acknowledged nothing in 20 s";
  }
  std::this_thread::sleep_for(delay);
  ::kill(pid, SIGKILL);  // our own child, by its id
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "writer exited on its own with status " << status;
  while ((n = ::read(fds[0], buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  uint64_t acked_end = 0;
  std::istringstream lines(out);
  uint64_t first;
  uint64_t count;
  while (lines >> first >> count) acked_end = std::max(acked_end, first + count);
  return acked_end;
}

TEST(LedgerCrash, KillNineDuringAppendsLosesNothingAcknowledged) {
  TempDir tmp;
  const std::string dir = tmp / "ledger";
  ASSERT_TRUE(FileLedger::Create(dir, "crash.example/log").ok());
  std::mt19937_64 rng(12345);
  uint64_t checked = 0;  // entries [0, checked) were compared byte for byte
  uint64_t kills_after_acks = 0;
  constexpr int kIterations = 40;
  for (int iter = 0; iter < kIterations; ++iter) {
    // Most kills land while appends are under way; every fifth during start-up.
    bool during_appends = iter % 5 != 4;
    auto delay = std::chrono::microseconds(rng() % (during_appends ? 20000 : 3000));
    uint64_t acked_end = RunAndKill(dir, during_appends, delay);
    if (acked_end > checked) ++kills_after_acks;

    std::unique_ptr<Ledger> ledger;
    Status s = FileLedger::Open(dir, FileLedger::Mode::kReadWrite, &ledger);  // recovers the tail
    ASSERT_TRUE(s.ok()) << "iteration " << iter << ": " << s.ToString();
    const uint64_t size = ledger->size();
    ASSERT_GE(size, acked_end) << "iteration " << iter << ": acknowledged entries are missing";
    ASSERT_GE(size, checked) << "iteration " << iter << ": the ledger shrank";
    // Every entry that survived, acknowledged or not, is exactly as written.
    for (uint64_t b = checked / 256; b * 256 < size; ++b) {
      tlog::TileId bundle{tlog::TileId::kEntries, b,
                          static_cast<uint32_t>(std::min<uint64_t>(256, size - b * 256))};
      std::string data;
      ASSERT_TRUE(ledger->ReadTile(bundle, &data).ok()) << bundle.Path();
      size_t pos = 0;
      for (uint64_t i = b * 256; i < b * 256 + bundle.width; ++i) {
        size_t len = (static_cast<uint8_t>(data[pos]) << 8) | static_cast<uint8_t>(data[pos + 1]);
        ASSERT_EQ(data.substr(pos + 2, len), CrashEntry(i))
            << "iteration " << iter << " entry " << i;
        pos += 2 + len;
      }
    }
    checked = size;
    if (iter % 10 == 9 || iter == kIterations - 1) {
      VerifyResult verified;
      s = VerifyLog(*ledger, ledger->verifier(), &verified);
      ASSERT_TRUE(s.ok()) << "iteration " << iter << ": " << s.ToString();
    }
  }
  std::printf("%llu of %d kills landed after acknowledgements; %llu entries checked\n",
              static_cast<unsigned long long>(kills_after_acks), kIterations,
              static_cast<unsigned long long>(checked));
  // The test means something only if kills landed while appends were acknowledged.
  EXPECT_GE(kills_after_acks, kIterations * 4u / 5u);
  EXPECT_GT(checked, 1000u);
}

}  // namespace
}  // namespace latch::ledger
