// Witnessing: the collector's witnesses (issue 18). At a bounded cadence
// (default once a second) it hands the ledger's latest checkpoint to each
// configured witness that has no request in flight, each on its own thread
// (so a slow or dead witness holds up nobody else, and never has more than
// one request outstanding); once `quorum` of them cosigned the same
// checkpoint it publishes it, with every cosignature it got, as the
// witnessed checkpoint: stored durably in the data directory before anyone
// is shown it, then served at /checkpoint. The latest unwitnessed
// checkpoint stays the ledger's own, for receipts and proofs.
//
// A witness that answers 409 holds another size: the request is made again
// at once with the consistency proof from that size. One that holds a size
// past the ledger's, or (422) rejects a proof from a size it holds, has
// seen a checkpoint this ledger does not extend: that is an alarm
// ("forked"). Failures are logged and counted per witness, and handed to
// the loop (TakeProblems) to record: when a witness's state changes, and
// while it keeps failing at most once a minute with a count.
//
// Threads: a pacer that starts the rounds (while active), the witnesses'
// threads, and callers of SetActive, published(), Describe() and
// TakeProblems on any thread. All shared state is under mu_.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "collector/ledger/ledger.h"
#include "collector/witnessing/witness_client.h"
#include "lib/status/status.h"

namespace latch::collector {

struct WitnessingOptions {
  std::vector<WitnessEndpoint> witnesses;
  size_t quorum = 1;
  std::chrono::milliseconds interval{1000};
  std::string dir;  // where the witnessed checkpoint is kept
};

// A change to put on record (a WitnessProblem record).
struct WitnessProblemEvent {
  std::string witness, url;
  std::string what;  // "unreachable", "refused", "forked", "recovered"
  std::string detail;
  uint64_t count = 0;
  uint64_t held_size = 0;
  uint64_t ledger_size = 0;
};

// What the collector knows of one witness.
struct WitnessView {
  std::string name, url;
  bool failing = false;
  std::string last_problem;
  uint64_t held_size = 0;  // the largest size it cosigned or said it holds
  uint64_t cosigned = 0, failures = 0, conflicts = 0, forked = 0;
};

class Witnessing {
 public:
  static constexpr const char* kFileName = "witnessed.checkpoint";

  // Loads the witnessed checkpoint kept in options.dir, if it still checks
  // out against `ledger` (its key, its quorum, a root the ledger has at its
  // size); one that does not is not served (logged), and the next one
  // published replaces it. Starts the witnesses' threads.
  static Status Open(WitnessingOptions options, ledger::Ledger& ledger,
                     std::unique_ptr<Witnessing>* out);
  ~Witnessing();
  Witnessing(const Witnessing&) = delete;
  Witnessing& operator=(const Witnessing&) = delete;

  // Rounds run only while active: on the collector that writes the ledger
  // (a standby's would repeat the sequencer's requests). Inactive at open.
  void SetActive(bool active);

  struct Published {
    std::string note;  // "" while nothing was witnessed
    uint64_t size = 0;
    size_t cosignatures = 0;
  };
  Published published() const;
  std::vector<WitnessView> Describe() const;
  std::vector<WitnessProblemEvent> TakeProblems();
  size_t quorum() const { return options_.quorum; }
  uint64_t rounds() const;
  uint64_t publications() const;
  uint64_t store_failures() const;

 private:
  struct Round {
    uint64_t id = 0;
    std::string note;
    uint64_t size = 0;
    std::string cosignatures;  // the lines gathered so far
    std::vector<bool> cosigned;
    size_t count = 0;
  };
  struct Witness {
    WitnessEndpoint endpoint;
    std::thread thread;
    std::shared_ptr<Round> job;  // the round to submit; null while idle
    bool busy = false;
    uint64_t held = 0;  // what it holds, as far as we know (0: fresh or unknown)
    WitnessView view;
    uint64_t unrecorded = 0;  // failures since the last record
    std::chrono::steady_clock::time_point recorded_at{};
  };
  Witnessing(WitnessingOptions options, ledger::Ledger& ledger);
  // Every `interval` while active: if the ledger's checkpoint is past the
  // witnessed one, offers it to every witness that is idle and has not
  // cosigned it yet.
  void Pace();
  void StartRound();
  void Run(size_t w);
  // The witness's answer to `round`, starting from the size it holds
  // (`held`); after a 409, once more from the size it named.
  // *conflicts counts its 409s.
  WitnessAnswer Submit(const Witness& w, const Round& round, uint64_t* held, int* conflicts);
  void TakeAnswer(size_t w, const std::shared_ptr<Round>& round, const WitnessAnswer& a,
                  uint64_t held, int conflicts);
  // With mu_ held: a failure of witness `w` of kind `what`, folded.
  void Failed(Witness& w, const std::string& what, const std::string& detail, uint64_t size);
  // Stores and then serves `note` (round `id`, `count` cosignatures), unless
  // something newer was published meanwhile.
  void Publish(uint64_t id, uint64_t size, const std::string& note, size_t count);

  const WitnessingOptions options_;
  ledger::Ledger& ledger_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool active_ = false;
  std::thread pacer_;
  std::vector<std::unique_ptr<Witness>> witnesses_;
  std::shared_ptr<Round> round_;  // the latest round begun
  uint64_t next_round_id_ = 1;
  Published published_;
  uint64_t published_round_ = 0;
  std::vector<WitnessProblemEvent> problems_;
  uint64_t rounds_ = 0, publications_ = 0, store_failures_ = 0;
  std::mutex store_mu_;  // one Publish's store at a time (not under mu_: it syncs)
  uint64_t stored_round_ = 0;
  size_t stored_count_ = 0;
};

}  // namespace latch::collector
