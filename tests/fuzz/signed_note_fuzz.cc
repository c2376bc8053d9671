// Signed notes and checkpoints as agents, latch-ledger and witnesses read
// them: a verifier key, a note opened with a key it was not signed by (any
// bytes: refused, never a crash), and the same text signed by the key, so
// that checkpoint bodies past the signature check are fuzzed too.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "lib/tlog/checkpoint.h"
#include "lib/tlog/signed_note.h"

namespace {
const latch::tlog::NoteSigner& Signer() {
  static const latch::tlog::NoteSigner* signer = [] {
    auto* s = new latch::tlog::NoteSigner();
    if (!latch::tlog::NoteSigner::Generate("fuzz.example/log", s).ok()) std::abort();
    return s;
  }();
  return *signer;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace latch::tlog;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  NoteVerifier parsed;
  (void)NoteVerifier::Parse(input, &parsed);
  NoteSigner parsed_signer;
  (void)NoteSigner::Parse(input, &parsed_signer);
  std::string text;
  (void)OpenNote(input, Signer().verifier(), &text);
  Checkpoint cp;
  (void)OpenCheckpoint(input, Signer().verifier(), &cp);
  (void)Checkpoint::ParseBody(input, &cp);
  // The input as a note text, signed: the body parser behind a good signature.
  std::string note;
  if (Signer().Sign(input, &note).ok()) {
    if (!OpenNote(note, Signer().verifier(), &text).ok()) std::abort();  // what was signed opens
    if (text != input) std::abort();
    if (OpenCheckpoint(note, Signer().verifier(), &cp).ok() && cp.Body() != input) std::abort();
  }
  return 0;
}
