#include "collector/witnessing/witnessing.h"

#include <filesystem>

#include "lib/logging/logger.h"
#include "lib/storage/append_file.h"
#include "lib/tlog/witnessed_checkpoint.h"

namespace latch::collector {

namespace {

constexpr auto kRecordEvery = std::chrono::seconds(60);

}  // namespace

Witnessing::Witnessing(WitnessingOptions options, ledger::Ledger& ledger)
    : options_(std::move(options)), ledger_(ledger) {}

Status Witnessing::Open(WitnessingOptions options, ledger::Ledger& ledger,
                        std::unique_ptr<Witnessing>* out) {
  if (options.witnesses.empty() || options.quorum == 0 ||
      options.quorum > options.witnesses.size()) {
    return Status::InvalidArgument("witness quorum must be between 1 and the witnesses listed");
  }
  std::unique_ptr<Witnessing> w(new Witnessing(std::move(options), ledger));
  const std::string path = w->options_.dir + "/" + kFileName;
  std::string note;
  if (std::filesystem::exists(path)) {
    LATCH_RETURN_IF_ERROR(storage::ReadWholeFile(path, &note, 64 * 1024));
    std::vector<tlog::CosignatureVerifier> keys;
    for (const WitnessEndpoint& e : w->options_.witnesses) keys.push_back(e.key);
    tlog::Checkpoint cp;
    std::vector<size_t> cosigned;
    Status s = tlog::OpenWitnessedCheckpoint(note, ledger.verifier(), keys, w->options_.quorum, &cp,
                                             &cosigned);
    tlog::Hash root{};
    if (s.ok() && cp.size > ledger.size()) {
      s = Status::Corruption("it covers " + std::to_string(cp.size) + " entries, the ledger " +
                             std::to_string(ledger.size()));
    } else if (s.ok()) {
      s = ledger.RootAt(cp.size, &root);
      if (s.ok() && root != cp.root) s = Status::Corruption("the ledger has another root there");
    }
    if (s.ok()) {
      w->published_ = {note, cp.size, cosigned.size()};
    } else {
      logging::Default().Warn("kept witnessed checkpoint not served; the next one replaces it",
                              {{"path", path}, {"why", s.ToString()}});
    }
  }
  for (const WitnessEndpoint& e : w->options_.witnesses) {
    auto one = std::make_unique<Witness>();
    one->endpoint = e;
    one->view.name = e.key.name();
    one->view.url = e.url;
    w->witnesses_.push_back(std::move(one));
  }
  for (size_t i = 0; i < w->witnesses_.size(); ++i) {
    w->witnesses_[i]->thread = std::thread([p = w.get(), i] { p->Run(i); });
  }
  w->pacer_ = std::thread([p = w.get()] { p->Pace(); });
  *out = std::move(w);
  return Status::Ok();
}

Witnessing::~Witnessing() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (pacer_.joinable()) pacer_.join();
  // A witness mid-request is waited for: at most its timeout.
  for (auto& w : witnesses_) {
    if (w->thread.joinable()) w->thread.join();
  }
}

void Witnessing::SetActive(bool active) {
  std::lock_guard<std::mutex> lock(mu_);
  active_ = active;
}

void Witnessing::Pace() {
  auto next = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (active_) {
      lock.unlock();
      StartRound();
      lock.lock();
    }
    next += options_.interval;
    // Behind (a slow round): the next one now, not a burst to catch up.
    next = std::max(next, std::chrono::steady_clock::now());
    wake_.wait_until(lock, next, [&] { return stopping_; });
  }
}

void Witnessing::StartRound() {
  const uint64_t size = ledger_.size();
  bool offered = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!published_.note.empty() && size <= published_.size) return;
    if (round_ == nullptr || round_->size < size) {
      auto r = std::make_shared<Round>();
      r->id = next_round_id_++;
      r->note = ledger_.checkpoint_note();
      tlog::Checkpoint cp;
      // The note and the size are read apart: the note's own size is the round's.
      if (!tlog::OpenCheckpoint(r->note, ledger_.verifier(), &cp).ok()) return;
      r->size = cp.size;
      r->cosigned.assign(witnesses_.size(), false);
      round_ = std::move(r);
      rounds_++;
    }
    for (size_t i = 0; i < witnesses_.size(); ++i) {
      Witness& w = *witnesses_[i];
      if (w.busy || w.job != nullptr || round_->cosigned[i]) continue;
      w.job = round_;
      offered = true;
    }
  }
  if (offered) wake_.notify_all();
}

void Witnessing::Run(size_t i) {
  Witness& w = *witnesses_[i];
  for (;;) {
    std::shared_ptr<Round> round;
    uint64_t held = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return stopping_ || w.job != nullptr; });
      if (stopping_) return;
      round = std::move(w.job);
      w.job = nullptr;
      w.busy = true;
      held = w.held;
    }
    int conflicts = 0;
    const WitnessAnswer a = Submit(w, *round, &held, &conflicts);
    TakeAnswer(i, round, a, held, conflicts);
  }
}

WitnessAnswer Witnessing::Submit(const Witness& w, const Round& round, uint64_t* held,
                                 int* conflicts) {
  WitnessAnswer a;
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::vector<tlog::Hash> proof;
    if (*held > 0 && *held < round.size) {
      Status s = ledger_.ConsistencyProof(*held, round.size, &proof);
      if (!s.ok()) {
        a = {};
        a.kind = WitnessAnswer::Kind::kRefused;
        a.detail = "no consistency proof from " + std::to_string(*held) + ": " + s.ToString();
        return a;
      }
    }
    a = AddCheckpoint(w.endpoint, AddCheckpointBody(*held, proof, round.note), round.note);
    if (a.kind != WitnessAnswer::Kind::kConflict) return a;
    ++*conflicts;
    if (a.held_size > round.size) return a;
    *held = a.held_size;  // and again, from the size it holds
  }
  return a;
}

void Witnessing::TakeAnswer(size_t i, const std::shared_ptr<Round>& round, const WitnessAnswer& a,
                            uint64_t held, int conflicts) {
  std::string publish;
  uint64_t publish_id = 0;
  size_t publish_count = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Witness& w = *witnesses_[i];
    w.busy = false;
    w.view.conflicts += static_cast<uint64_t>(conflicts);
    switch (a.kind) {
      case WitnessAnswer::Kind::kCosigned:
        w.held = round->size;
        w.view.held_size = round->size;
        w.view.cosigned++;
        if (w.view.failing) {
          problems_.push_back(
              {w.view.name, w.view.url, "recovered", "", w.unrecorded, w.held, round->size});
          logging::Default().Info(
              "witness cosigns again",
              {{"witness", w.view.name}, {"failures", w.unrecorded}, {"size", round->size}});
          w.view.failing = false;
          w.view.last_problem.clear();
          w.unrecorded = 0;
          w.recorded_at = std::chrono::steady_clock::now();
        }
        if (!round->cosigned[i]) {
          round->cosigned[i] = true;
          round->cosignatures += a.cosignature;
          round->count++;
        }
        // Published once the quorum is reached, and again with each later
        // cosignature of the same round (more witnesses, more verifiers
        // satisfied); a round older than the one published is not.
        if (round->count >= options_.quorum && round->id >= published_round_) {
          publish = round->note + round->cosignatures;
          publish_id = round->id;
          publish_count = round->count;
        }
        break;
      case WitnessAnswer::Kind::kConflict:
        // Past the ledger's size (Submit retries any other 409 once).
        w.view.held_size = a.held_size;
        if (a.held_size > round->size) {
          Failed(w, "forked",
                 "holds size " + std::to_string(a.held_size) + ", past the ledger's " +
                     std::to_string(round->size),
                 round->size);
        } else {
          w.held = a.held_size;
          Failed(w, "refused", "answered 409 twice", round->size);
        }
        break;
      case WitnessAnswer::Kind::kRefused:
        if (held > 0) w.held = held;  // a 409 taught us its size
        if (a.status == 422 && held > 0) {
          Failed(w, "forked",
                 "rejected the proof from the size it holds (" + std::to_string(held) +
                     "): it holds another root there; " + a.detail,
                 round->size);
        } else {
          Failed(w, "refused", a.detail, round->size);
        }
        break;
      case WitnessAnswer::Kind::kUnreachable:
        Failed(w, "unreachable", a.detail, round->size);
        break;
    }
  }
  if (!publish.empty()) Publish(publish_id, round->size, publish, publish_count);
}

void Witnessing::Failed(Witness& w, const std::string& what, const std::string& detail,
                        uint64_t size) {
  w.view.failures++;
  if (what == "forked") w.view.forked++;
  w.unrecorded++;
  const auto now = std::chrono::steady_clock::now();
  const bool changed = !w.view.failing || w.view.last_problem != what;
  if (!changed && now - w.recorded_at < kRecordEvery) return;
  problems_.push_back(
      {w.view.name, w.view.url, what, detail, w.unrecorded, w.view.held_size, size});
  const logging::Fields fields = {{"witness", w.view.name},   {"url", w.view.url},
                                  {"problem", what},          {"detail", detail},
                                  {"failures", w.unrecorded}, {"ledger_size", size}};
  if (what == "forked") {
    logging::Default().Alert(
        "a witness holds a checkpoint this ledger does not extend: a split view or lost entries",
        fields);
  } else {
    logging::Default().Warn("witness did not cosign", fields);
  }
  w.view.failing = true;
  w.view.last_problem = what;
  w.unrecorded = 0;
  w.recorded_at = now;
}

void Witnessing::Publish(uint64_t id, uint64_t size, const std::string& note, size_t count) {
  std::lock_guard<std::mutex> store(store_mu_);
  if (id < stored_round_ || (id == stored_round_ && count <= stored_count_)) return;
  Status s = storage::WriteFileAtomically(options_.dir, kFileName, note, 0644);
  std::lock_guard<std::mutex> lock(mu_);
  if (!s.ok()) {
    // Not served: what /checkpoint shows must survive a restart. The next
    // round tries again.
    store_failures_++;
    logging::Default().Error("could not store the witnessed checkpoint",
                             {{"size", size}, {"why", s.ToString()}});
    if (round_ != nullptr && round_->id == id) {
      round_.reset();  // a fresh round re-collects once the disk takes it
    }
    return;
  }
  stored_round_ = id;
  stored_count_ = count;
  published_ = {note, size, count};
  published_round_ = id;
  publications_++;
}

Witnessing::Published Witnessing::published() const {
  std::lock_guard<std::mutex> lock(mu_);
  return published_;
}

std::vector<WitnessView> Witnessing::Describe() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<WitnessView> out;
  for (const auto& w : witnesses_) out.push_back(w->view);
  return out;
}

std::vector<WitnessProblemEvent> Witnessing::TakeProblems() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::move(problems_);
}

uint64_t Witnessing::rounds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rounds_;
}

uint64_t Witnessing::publications() const {
  std::lock_guard<std::mutex> lock(mu_);
  return publications_;
}

uint64_t Witnessing::store_failures() const {
  std::lock_guard<std::mutex> lock(mu_);
  return store_failures_;
}

}  // namespace latch::collector
