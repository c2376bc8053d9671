#include "witness/add_checkpoint.h"

#include <cerrno>
#include <cstdlib>

#include "lib/logging/logger.h"
#include "lib/tlog/base64.h"
#include "lib/tlog/checkpoint.h"
#include "lib/tlog/proof.h"

namespace latch::witness {

namespace {

WitnessAnswer Answer(int status, std::string body) {
  if (!body.empty() && body.back() != '\n') body += '\n';
  return {status, "text/plain; charset=utf-8", std::move(body)};
}

// An ASCII decimal without leading zeroes (or "0") that fits 64 bits.
bool ParseSize(const std::string& text, uint64_t* out) {
  if (text.empty() || text.size() > 20 || (text.size() > 1 && text[0] == '0') ||
      text.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  errno = 0;
  const unsigned long long v = std::strtoull(text.c_str(), nullptr, 10);
  if (errno != 0) return false;
  *out = v;
  return true;
}

}  // namespace

Witness::Witness(tlog::CosignatureSigner key,
                 std::map<std::string, std::vector<tlog::NoteVerifier>> logs, WitnessState state)
    : key_(std::move(key)), logs_(std::move(logs)), state_(std::move(state)) {}

std::map<std::string, LogState> Witness::Logs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_.logs();
}

WitnessCounters Witness::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

WitnessAnswer Witness::AddCheckpoint(const std::string& body, uint64_t now) {
  auto refuse = [this](int status, const std::string& why) {
    std::lock_guard<std::mutex> lock(mu_);
    counters_.refused++;
    return Answer(status, why);
  };
  if (body.size() > kMaxBody) return refuse(400, "the body is too large");
  // "old N\n", up to 63 proof lines, an empty line, then the checkpoint.
  size_t at = 0;
  auto next_line = [&](std::string* line) {
    const size_t eol = body.find('\n', at);
    if (eol == std::string::npos) return false;
    *line = body.substr(at, eol - at);
    at = eol + 1;
    return true;
  };
  std::string line;
  uint64_t old_size = 0;
  if (!next_line(&line) || line.rfind("old ", 0) != 0 || !ParseSize(line.substr(4), &old_size)) {
    return refuse(400, "the first line must be 'old <size>'");
  }
  std::vector<tlog::Hash> proof;
  for (;;) {
    if (!next_line(&line)) return refuse(400, "no empty line before the checkpoint");
    if (line.empty()) break;
    if (proof.size() == kMaxProofLines) return refuse(400, "more than 63 proof lines");
    auto hash = tlog::Base64Decode(line);
    if (!hash || hash->size() != tlog::Hash{}.size()) {
      return refuse(400, "a proof line is not the base64 of a 32-byte hash");
    }
    tlog::Hash h;
    std::copy(hash->begin(), hash->end(), h.begin());
    proof.push_back(h);
  }
  const std::string note = body.substr(at);
  const size_t origin_end = note.find('\n');
  if (origin_end == std::string::npos) return refuse(400, "the checkpoint has no origin line");
  const std::string origin = note.substr(0, origin_end);
  auto log = logs_.find(origin);
  if (log == logs_.end()) return refuse(404, "this witness does not witness " + origin);
  tlog::Checkpoint cp;
  Status opened = Status::VerifyFailed("no trusted key");
  for (const tlog::NoteVerifier& v : log->second) {
    opened = tlog::OpenCheckpoint(note, v, &cp);
    if (opened.ok()) break;
  }
  if (!opened.ok()) {
    // A malformed checkpoint body under a valid signature is still a bad request.
    const bool unsigned_or_bad = opened.code() == Status::Code::kVerifyFailed;
    return refuse(unsigned_or_bad ? 403 : 400, "the checkpoint: " + opened.ToString());
  }
  if (old_size > cp.size) return refuse(400, "the old size is past the checkpoint's size");

  std::lock_guard<std::mutex> lock(mu_);
  const LogState held = state_.Get(origin);
  if (old_size != held.size) {
    counters_.conflicts++;
    return {409, "text/x.tlog.size", std::to_string(held.size) + "\n"};
  }
  std::string inconsistent;
  if (cp.size == 0 && cp.root != tlog::MerkleHasher::EmptyRoot()) {
    inconsistent = "a tree of size 0 whose root is not the empty tree's";
  } else if (old_size == 0 && !proof.empty()) {
    inconsistent = "a consistency proof from size 0, which needs none";
  } else if (old_size != 0) {
    Status s = tlog::VerifyConsistency(old_size, cp.size, proof, held.root, cp.root);
    if (!s.ok()) {
      inconsistent = old_size == cp.size ? "another root for the size this witness holds"
                                         : "the consistency proof does not verify: " + s.ToString();
    }
  }
  if (!inconsistent.empty()) {
    counters_.refused++;
    // Signed by the log and not consistent with what it showed before: kept,
    // since it may be the proof of a fork.
    if (Status kept = state_.KeepEvidence(origin, note, inconsistent); kept.ok()) {
      counters_.evidence++;
    } else {
      logging::Default().Error("evidence of a conflicting checkpoint was not kept",
                               {{"origin", origin}, {"error", kept.ToString()}});
    }
    logging::Default().Alert("a signed checkpoint that does not extend what this witness cosigned",
                             {{"origin", origin},
                              {"held_size", held.size},
                              {"offered_size", cp.size},
                              {"why", inconsistent}});
    return Answer(422, inconsistent);
  }
  // The note's text (its signature was checked above) is what is cosigned.
  std::string_view text;
  std::vector<tlog::NoteSignature> signatures;
  std::string cosignature;
  Status s = tlog::SplitNote(note, &text, &signatures);
  if (s.ok()) s = key_.Cosign(text, now, &cosignature);
  // Stored before it is answered: a cosignature is never given for a state
  // the witness could forget.
  if (s.ok()) s = state_.Put(origin, {cp.size, cp.root, note});
  if (!s.ok()) {
    counters_.store_failed++;
    logging::Default().Error("a checkpoint could not be stored; nothing was cosigned",
                             {{"origin", origin}, {"error", s.ToString()}});
    return Answer(503, "the witness could not store the checkpoint; try again");
  }
  counters_.cosigned++;
  return {200, "text/plain; charset=utf-8", cosignature};
}

}  // namespace latch::witness
