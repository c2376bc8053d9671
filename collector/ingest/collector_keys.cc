#include "collector/ingest/collector_keys.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <memory>
#include <vector>

#include "collector/grants/grant_keys.h"
#include "collector/ingest/ledger_storage.h"
#include "schemas/curve_key.h"

namespace latch::collector {

Status LoadOrMakeCollectorKeys(const CollectorConfig& config, CollectorKeys* out) {
  const std::string& dir = config.data_dir;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::FromErrno("creating data directory " + dir, errno);
  }
  schema::CurveKeyPair curve;
  LATCH_RETURN_IF_ERROR(schema::LoadOrCreateCurveKey(dir + "/curve.key", &curve));
  tlog::NoteVerifier grant;
  Status s = ReadGrantVerifier(dir, &grant);
  if (s.code() == Status::Code::kNotFound) {
    tlog::NoteSigner signer;
    std::vector<tlog::NoteVerifier> retired;
    LATCH_RETURN_IF_ERROR(LoadGrantKeys(dir, config.origin, &signer, &retired));
    grant = signer.verifier();
  } else {
    LATCH_RETURN_IF_ERROR(s);
  }
  tlog::NoteVerifier ledger_key;
  LATCH_RETURN_IF_ERROR(ReadLedgerVerifier(config, &ledger_key));
  LATCH_RETURN_IF_ERROR(MatchDataDirOwner(dir));
  out->curve_public_key = curve.public_z85;
  out->grant_key = grant.ToString();
  out->ledger_key = ledger_key.ToString();
  return Status::Ok();
}

Status MatchDataDirOwner(const std::string& dir) {
  if (::geteuid() != 0) return Status::Ok();
  struct stat top {};
  if (::stat(dir.c_str(), &top) != 0) return Status::FromErrno("stat " + dir, errno);
  if (top.st_uid == 0) return Status::Ok();
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st {};
    const std::string path = it->path().string();
    if (::lstat(path.c_str(), &st) != 0 || st.st_uid != 0) continue;
    if (::lchown(path.c_str(), top.st_uid, top.st_gid) != 0) {
      return Status::FromErrno("giving " + path + " to the owner of " + dir, errno);
    }
  }
  if (ec) return Status::IoError("walking " + dir + ": " + ec.message());
  return Status::Ok();
}

}  // namespace latch::collector
