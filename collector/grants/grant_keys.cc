#include "collector/grants/grant_keys.h"

#include <cerrno>
#include <cstdio>
#include <sstream>

#include "lib/storage/append_file.h"

namespace latch::collector {
namespace {

Status ReadSigner(const std::string& path, tlog::NoteSigner* signer) {
  std::string text;
  LATCH_RETURN_IF_ERROR(storage::ReadWholeFile(path, &text));
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return tlog::NoteSigner::Parse(text, signer).WithContext(path);
}

Status ReadRetired(const std::string& dir, std::vector<tlog::NoteVerifier>* retired) {
  retired->clear();
  std::string text;
  Status s = storage::ReadWholeFile(dir + "/grant.retired", &text);
  if (s.code() == Status::Code::kNotFound) return Status::Ok();
  LATCH_RETURN_IF_ERROR(s);
  std::istringstream lines(text);
  int n = 0;
  for (std::string line; std::getline(lines, line);) {
    ++n;
    if (line.empty()) continue;
    tlog::NoteVerifier v;
    LATCH_RETURN_IF_ERROR(tlog::NoteVerifier::Parse(line, &v).WithContext(
        dir + "/grant.retired:" + std::to_string(n)));
    retired->push_back(v);
  }
  return Status::Ok();
}

}  // namespace

Status LoadGrantKeys(const std::string& dir, const std::string& origin, tlog::NoteSigner* signer,
                     std::vector<tlog::NoteVerifier>* retired) {
  Status s = ReadSigner(dir + "/grant.key", signer);
  if (s.code() == Status::Code::kNotFound) {
    LATCH_RETURN_IF_ERROR(tlog::NoteSigner::Generate(origin + "/grants", signer));
    LATCH_RETURN_IF_ERROR(
        storage::WriteFileAtomically(dir, "grant.key", signer->ToString() + "\n", 0600));
  } else {
    LATCH_RETURN_IF_ERROR(s);
  }
  LATCH_RETURN_IF_ERROR(
      storage::WriteFileAtomically(dir, "grant.vkey", signer->verifier().ToString() + "\n", 0644));
  std::vector<tlog::NoteVerifier> all;
  LATCH_RETURN_IF_ERROR(ReadRetired(dir, &all));
  // A promotion cut short by a crash can list the key in use as retired too.
  retired->clear();
  for (const tlog::NoteVerifier& v : all) {
    if (v.key_id() != signer->verifier().key_id()) retired->push_back(v);
  }
  return Status::Ok();
}

Status ReadGrantVerifier(const std::string& dir, tlog::NoteVerifier* verifier) {
  tlog::NoteSigner signer;
  LATCH_RETURN_IF_ERROR(ReadSigner(dir + "/grant.key", &signer));
  *verifier = signer.verifier();
  return Status::Ok();
}

Status PrepareNextGrantKey(const std::string& dir, const std::string& origin, std::string* vkey) {
  tlog::NoteSigner next;
  Status s = ReadSigner(dir + "/grant.next.key", &next);
  if (s.code() == Status::Code::kNotFound) {
    LATCH_RETURN_IF_ERROR(tlog::NoteSigner::Generate(origin + "/grants", &next));
    LATCH_RETURN_IF_ERROR(
        storage::WriteFileAtomically(dir, "grant.next.key", next.ToString() + "\n", 0600));
  } else {
    LATCH_RETURN_IF_ERROR(s);
  }
  *vkey = next.verifier().ToString();
  return Status::Ok();
}

Status PromoteNextGrantKey(const std::string& dir, std::string* retired_vkey,
                           std::string* new_vkey) {
  tlog::NoteSigner current, next;
  Status s = ReadSigner(dir + "/grant.next.key", &next);
  if (s.code() == Status::Code::kNotFound) {
    return Status::FailedPrecondition("no prepared grant key in " + dir +
                                      " (run latch-collector grant-key --next first)");
  }
  LATCH_RETURN_IF_ERROR(s);
  LATCH_RETURN_IF_ERROR(ReadSigner(dir + "/grant.key", &current));
  // Retire first, then switch: a crash between the two leaves the current key
  // both in use and listed as retired, which LoadGrantKeys tolerates.
  std::string text;
  Status r = storage::ReadWholeFile(dir + "/grant.retired", &text);
  if (!r.ok() && r.code() != Status::Code::kNotFound) return r;
  if (!text.empty() && text.back() != '\n') text += '\n';
  text += current.verifier().ToString() + "\n";
  LATCH_RETURN_IF_ERROR(storage::WriteFileAtomically(dir, "grant.retired", text, 0644));
  LATCH_RETURN_IF_ERROR(
      storage::WriteFileAtomically(dir, "grant.key", next.ToString() + "\n", 0600));
  LATCH_RETURN_IF_ERROR(
      storage::WriteFileAtomically(dir, "grant.vkey", next.verifier().ToString() + "\n", 0644));
  if (std::remove((dir + "/grant.next.key").c_str()) != 0) {
    return Status::FromErrno("removing " + dir + "/grant.next.key", errno);
  }
  *retired_vkey = current.verifier().ToString();
  *new_vkey = next.verifier().ToString();
  return Status::Ok();
}

}  // namespace latch::collector
