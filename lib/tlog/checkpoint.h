// C2SP tlog-checkpoint bodies (https://c2sp.org/tlog-checkpoint):
//   <origin>\n<tree size, decimal>\n<base64 root hash>\n[<extension line>\n]*
// carried in a signed note by the log's key.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lib/status/status.h"
#include "lib/tlog/sha256.h"
#include "lib/tlog/signed_note.h"

namespace latch::tlog {

struct Checkpoint {
  std::string origin;
  uint64_t size = 0;
  Hash root{};
  std::vector<std::string> extensions;

  std::string Body() const;
  static Status ParseBody(std::string_view body, Checkpoint* out);
};

// Opens a signed checkpoint note with `verifier` and parses its body. The
// origin must equal the verifier's key name: a log signs only its own origin.
Status OpenCheckpoint(std::string_view note, const NoteVerifier& verifier, Checkpoint* out);

}  // namespace latch::tlog
