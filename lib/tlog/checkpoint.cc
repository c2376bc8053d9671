#include "lib/tlog/checkpoint.h"

#include <algorithm>
#include <charconv>

#include "lib/tlog/base64.h"

namespace latch::tlog {

std::string Checkpoint::Body() const {
  std::string body = origin + "\n" + std::to_string(size) + "\n" + Base64Encode(root) + "\n";
  for (const auto& ext : extensions) body += ext + "\n";
  return body;
}

Status Checkpoint::ParseBody(std::string_view body, Checkpoint* out) {
  std::vector<std::string_view> lines;
  while (!body.empty()) {
    size_t eol = body.find('\n');
    if (eol == std::string_view::npos)
      return Status::Corruption("checkpoint does not end in a newline");
    lines.push_back(body.substr(0, eol));
    body.remove_prefix(eol + 1);
  }
  if (lines.size() < 3) return Status::Corruption("checkpoint has fewer than three lines");
  Checkpoint c;
  c.origin = lines[0];
  if (c.origin.empty()) return Status::Corruption("checkpoint origin is empty");
  std::string_view size = lines[1];
  auto [end, ec] = std::from_chars(size.data(), size.data() + size.size(), c.size);
  if (size.empty() || ec != std::errc() || end != size.data() + size.size() ||
      (size.size() > 1 && size[0] == '0')) {
    return Status::Corruption("checkpoint size is not a decimal number");
  }
  auto root = Base64Decode(lines[2]);
  if (!root || root->size() != c.root.size()) {
    return Status::Corruption("checkpoint root is not a base64 SHA-256 hash");
  }
  std::copy(root->begin(), root->end(), c.root.begin());
  for (size_t i = 3; i < lines.size(); ++i) {
    if (lines[i].empty()) return Status::Corruption("checkpoint has an empty extension line");
    c.extensions.emplace_back(lines[i]);
  }
  *out = std::move(c);
  return Status::Ok();
}

Status OpenCheckpoint(std::string_view note, const NoteVerifier& verifier, Checkpoint* out) {
  std::string text;
  LATCH_RETURN_IF_ERROR(OpenNote(note, verifier, &text).WithContext("checkpoint"));
  Checkpoint c;
  LATCH_RETURN_IF_ERROR(Checkpoint::ParseBody(text, &c));
  if (c.origin != verifier.name()) {
    return Status::VerifyFailed("checkpoint origin '" + c.origin + "' is not the key's name '" +
                                verifier.name() + "'");
  }
  *out = std::move(c);
  return Status::Ok();
}

}  // namespace latch::tlog
