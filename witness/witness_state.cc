#include "witness/witness_state.h"

#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <filesystem>

#include "lib/storage/append_file.h"
#include "lib/tlog/base64.h"
#include "lib/tlog/hex.h"
#include "lib/tlog/sha256.h"

namespace latch::witness {

namespace {

constexpr char kHeader[] = "latch-witness-state v1\n";

std::string FileNameOf(const std::string& origin) {
  return tlog::HexEncode(
      tlog::Sha256::Of({reinterpret_cast<const uint8_t*>(origin.data()), origin.size()}));
}

// "latch-witness-state v1\n<origin>\n<size>\n<base64 root>\n\n<note>"
std::string Encode(const std::string& origin, const LogState& s) {
  return std::string(kHeader) + origin + "\n" + std::to_string(s.size) + "\n" +
         tlog::Base64Encode(s.root) + "\n\n" + s.note;
}

Status Decode(const std::string& text, std::string* origin, LogState* s) {
  auto bad = [](const std::string& why) { return Status::Corruption("witness state: " + why); };
  if (text.rfind(kHeader, 0) != 0) return bad("no header");
  size_t at = sizeof(kHeader) - 1;
  auto line = [&](std::string* out) {
    const size_t eol = text.find('\n', at);
    if (eol == std::string::npos) return false;
    *out = text.substr(at, eol - at);
    at = eol + 1;
    return true;
  };
  std::string size, root, blank;
  if (!line(origin) || !line(&size) || !line(&root) || !line(&blank) || !blank.empty()) {
    return bad("truncated");
  }
  if (size.empty() || size.size() > 20 || (size.size() > 1 && size[0] == '0') ||
      size.find_first_not_of("0123456789") != std::string::npos) {
    return bad("size '" + size + "'");
  }
  errno = 0;
  const unsigned long long n = std::strtoull(size.c_str(), nullptr, 10);
  if (errno != 0) return bad("size '" + size + "'");
  auto hash = tlog::Base64Decode(root);
  if (!hash || hash->size() != s->root.size()) return bad("root");
  s->size = n;
  std::copy(hash->begin(), hash->end(), s->root.begin());
  s->note = text.substr(at);
  return Status::Ok();
}

}  // namespace

Status WitnessState::Open(const std::string& dir, WitnessState* out) {
  WitnessState w;
  w.dir_ = dir;
  for (const std::string& d : {dir, dir + "/logs", dir + "/evidence"}) {
    if (::mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) {
      return Status::FromErrno("making " + d, errno);
    }
  }
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/logs", ec)) {
    const std::string name = e.path().filename();
    if (name.find('.') != std::string::npos) continue;  // a temporary of an unfinished write
    std::string text, origin;
    LogState s;
    LATCH_RETURN_IF_ERROR(storage::ReadWholeFile(e.path(), &text));
    LATCH_RETURN_IF_ERROR(Decode(text, &origin, &s).WithContext(e.path().string()));
    if (FileNameOf(origin) != name) {
      return Status::Corruption(e.path().string() + ": holds the state of another log (" + origin +
                                ")");
    }
    w.logs_[origin] = std::move(s);
  }
  if (ec) return Status::IoError("reading " + dir + "/logs: " + ec.message());
  *out = std::move(w);
  return Status::Ok();
}

LogState WitnessState::Get(const std::string& origin) const {
  auto it = logs_.find(origin);
  if (it != logs_.end()) return it->second;
  LogState empty;
  empty.root = tlog::MerkleHasher::EmptyRoot();
  return empty;
}

Status WitnessState::Put(const std::string& origin, const LogState& state) {
  LATCH_RETURN_IF_ERROR(storage::WriteFileAtomically(dir_ + "/logs", FileNameOf(origin),
                                                     Encode(origin, state), 0600));
  logs_[origin] = state;
  return Status::Ok();
}

Status WitnessState::KeepEvidence(const std::string& origin, const std::string& note,
                                  const std::string& why) {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  const std::string name =
      FileNameOf(origin) + "-" +
      std::to_string(std::chrono::duration_cast<std::chrono::nanoseconds>(now).count());
  const LogState held = Get(origin);
  std::string text = "origin: " + origin + "\nwhy: " + why + "\n\n--- held (size " +
                     std::to_string(held.size) + ")\n" + held.note + "--- offered\n" + note;
  LATCH_RETURN_IF_ERROR(storage::WriteFileAtomically(dir_ + "/evidence", name, text, 0600));
  ++evidence_kept_;
  return Status::Ok();
}

}  // namespace latch::witness
