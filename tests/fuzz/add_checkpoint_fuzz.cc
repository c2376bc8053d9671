// The witness's add-checkpoint (witness/add_checkpoint.h), as a log or an
// attacker would call it: any bytes as the request body, and the same bytes
// with what follows their first blank line signed by the log's key, so that
// the paths past the signature check (sizes, proofs, the state held) are
// fuzzed too. Never a crash; only the spec's answers; a 200 carries a
// cosignature that verifies; what the witness holds never goes back.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>

#include "lib/tlog/cosignature.h"
#include "lib/tlog/signed_note.h"
#include "witness/add_checkpoint.h"

namespace {

constexpr char kOrigin[] = "fuzz.example/log";

struct Fixture {
  latch::tlog::NoteSigner log;
  latch::tlog::CosignatureSigner key;
  latch::witness::Witness* witness = nullptr;
};

Fixture& Get() {
  static Fixture* f = [] {
    auto* x = new Fixture();
    if (!latch::tlog::NoteSigner::Generate(kOrigin, &x->log).ok()) std::abort();
    if (!latch::tlog::CosignatureSigner::Generate("fuzz.example/witness", &x->key).ok()) {
      std::abort();
    }
    static char tmpl[] = "/tmp/latch-witness-fuzz-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) std::abort();
    // The state the witness writes goes when the run ends.
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(tmpl, ec);
    });
    latch::witness::WitnessState state;
    if (!latch::witness::WitnessState::Open(tmpl, &state).ok()) std::abort();
    x->witness =
        new latch::witness::Witness(x->key, {{kOrigin, {x->log.verifier()}}}, std::move(state));
    return x;
  }();
  return *f;
}

void Check(const std::string& body) {
  Fixture& f = Get();
  const uint64_t before = f.witness->Logs().count(kOrigin) ? f.witness->Logs().at(kOrigin).size : 0;
  latch::witness::WitnessAnswer a = f.witness->AddCheckpoint(body, 1796000000);
  static const std::set<int> kAnswers = {200, 400, 403, 404, 409, 422, 503};
  if (kAnswers.count(a.status) == 0) std::abort();
  const uint64_t after = f.witness->Logs().count(kOrigin) ? f.witness->Logs().at(kOrigin).size : 0;
  if (after < before) std::abort();  // never goes back
  if (a.status != 200) {
    if (after != before) std::abort();  // a refusal changes nothing
    return;
  }
  // The cosignature verifies on the checkpoint that was sent.
  const std::string note = body.substr(body.find("\n\n") + 2);
  std::vector<size_t> found;
  const std::vector<latch::tlog::CosignatureVerifier> witnesses = {f.key.verifier()};
  if (!latch::tlog::FindCosignatures(note + a.body, witnesses, &found).ok() || found.size() != 1) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  Check(input);
  const size_t blank = input.find("\n\n");
  if (blank != std::string::npos) {
    std::string note;
    if (Get().log.Sign(input.substr(blank + 2), &note).ok()) {
      Check(input.substr(0, blank + 2) + note);
    }
  }
  return 0;
}
