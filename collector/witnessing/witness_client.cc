#include "collector/witnessing/witness_client.h"

#include <charconv>
#include <span>

#include "collector/client/api_client.h"
#include "lib/tlog/base64.h"

namespace latch::collector {

namespace {

// A witness's words, fit for a log line and a record: printable ASCII, short.
std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 200)) {
    out += (c >= 0x20 && c < 0x7f) ? c : ' ';
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace

std::string AddCheckpointBody(uint64_t old_size, const std::vector<tlog::Hash>& proof,
                              const std::string& note) {
  std::string body = "old " + std::to_string(old_size) + "\n";
  for (const tlog::Hash& h : proof) {
    body += tlog::Base64Encode(std::span<const uint8_t>(h.data(), h.size())) + "\n";
  }
  return body + "\n" + note;
}

std::string VerifiedCosignature(const std::string& note, const std::string& answer,
                                const tlog::CosignatureVerifier& key) {
  std::string kept;
  for (size_t at = 0; at < answer.size();) {
    size_t end = answer.find('\n', at);
    if (end == std::string::npos) break;  // a line must end in a newline
    const std::string line = answer.substr(at, end + 1 - at);
    at = end + 1;
    std::vector<size_t> cosigned;
    const tlog::CosignatureVerifier keys[] = {key};
    if (tlog::FindCosignatures(note + line, keys, &cosigned).ok() && !cosigned.empty() &&
        note.find(line) == std::string::npos) {
      kept += line;
    }
  }
  return kept;
}

WitnessAnswer AddCheckpoint(const WitnessEndpoint& witness, const std::string& body,
                            const std::string& note) {
  WitnessAnswer a;
  client::Endpoint endpoint;
  std::string base = witness.url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  // The URL's path, if any, prefixes add-checkpoint (a witness behind a
  // proxy); the server part is what the client connects to.
  std::string path;
  if (const size_t slash = base.find('/', sizeof("https://") - 1); slash != std::string::npos) {
    path = base.substr(slash);
    base.resize(slash);
  }
  endpoint.server = base;
  endpoint.ca = witness.ca;
  endpoint.content_type = "text/plain; charset=utf-8";
  endpoint.user_agent = "latch-collector";
  endpoint.timeout = witness.timeout;
  client::Reply reply;
  Status s = client::Call(endpoint, "POST", path + "/add-checkpoint", body, &reply);
  if (!s.ok()) {
    a.kind = WitnessAnswer::Kind::kUnreachable;
    a.detail = Printable(s.message());
    return a;
  }
  a.status = reply.status;
  if (reply.status == 200) {
    a.cosignature = VerifiedCosignature(note, reply.body, witness.key);
    if (!a.cosignature.empty()) {
      a.kind = WitnessAnswer::Kind::kCosigned;
      return a;
    }
    a.kind = WitnessAnswer::Kind::kRefused;
    a.detail = "answered 200 without a valid cosignature by its key";
    return a;
  }
  if (reply.status == 409) {
    // The body is the size it holds, in decimal, and a newline.
    std::string_view text = reply.body;
    if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
    uint64_t held = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), held);
    if (ec == std::errc() && end == text.data() + text.size() && !text.empty() &&
        (text.size() == 1 || text[0] != '0')) {
      a.kind = WitnessAnswer::Kind::kConflict;
      a.held_size = held;
      return a;
    }
    a.kind = WitnessAnswer::Kind::kRefused;
    a.detail = "answered 409 without a size: " + Printable(reply.body);
    return a;
  }
  a.kind = WitnessAnswer::Kind::kRefused;
  a.detail = "answered " + std::to_string(reply.status) + ": " + Printable(reply.body);
  return a;
}

}  // namespace latch::collector
