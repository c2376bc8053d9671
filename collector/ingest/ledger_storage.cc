#include "collector/ingest/ledger_storage.h"

#include "collector/ledger/file_ledger.h"
#include "collector/ledger/postgres/postgres_ledger.h"
#include "lib/logging/logger.h"
#include "lib/storage/append_file.h"

namespace latch::collector {

namespace {

constexpr char kSetting[] = "[storage] postgres";

std::string TrimLine(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

Status LoadSigner(const CollectorConfig& config, tlog::NoteSigner* out) {
  const std::string path = config.ledger_key_path();
  std::string text;
  Status s = storage::ReadWholeFile(path, &text);
  if (s.code() == Status::Code::kNotFound) {
    return Status::NotFound("no ledger key at " + path +
                            " ([storage] key): run latch-collector storage init on one "
                            "collector, then copy the file to the others");
  }
  LATCH_RETURN_IF_ERROR(s);
  LATCH_RETURN_IF_ERROR(tlog::NoteSigner::Parse(TrimLine(text), out).WithContext(path));
  if (out->verifier().name() != config.origin) {
    return Status::FailedPrecondition(path + " signs for '" + out->verifier().name() +
                                      "', the config's origin is '" + config.origin + "'");
  }
  return Status::Ok();
}

Status OpenFiles(const CollectorConfig& config, std::unique_ptr<ledger::Ledger>* out) {
  const std::string dir = config.data_dir + "/ledger";
  if (!ledger::FileLedger::IsLedgerDirectory(dir)) {
    LATCH_RETURN_IF_ERROR(ledger::FileLedger::Create(dir, config.origin));
  }
  std::unique_ptr<ledger::FileLedger> l;
  LATCH_RETURN_IF_ERROR(ledger::FileLedger::Open(dir, ledger::FileLedger::Mode::kReadWrite, &l));
  if (l->checkpoint().origin != config.origin) {
    return Status::FailedPrecondition("the ledger in " + dir + " has origin '" +
                                      l->checkpoint().origin + "', config says '" + config.origin +
                                      "'");
  }
  *out = std::move(l);
  return Status::Ok();
}

}  // namespace

Status OpenCollectorLedger(const CollectorConfig& config, std::unique_ptr<ledger::Ledger>* out,
                           ledger::SharedLedger** shared) {
  *shared = nullptr;
  if (config.storage_postgres.empty()) return OpenFiles(config, out);
  tlog::NoteSigner signer;
  LATCH_RETURN_IF_ERROR(LoadSigner(config, &signer));
  std::unique_ptr<ledger::postgres::PostgresLedger> l;
  LATCH_RETURN_IF_ERROR(
      ledger::postgres::PostgresLedger::Open(config.storage_postgres, kSetting, signer, &l));
  *shared = l.get();
  *out = std::move(l);
  return Status::Ok();
}

Status ReadLedgerVerifier(const CollectorConfig& config, tlog::NoteVerifier* out) {
  if (!config.storage_postgres.empty()) {
    tlog::NoteSigner signer;
    LATCH_RETURN_IF_ERROR(LoadSigner(config, &signer));
    *out = signer.verifier();
    return Status::Ok();
  }
  const std::string dir = config.data_dir + "/ledger";
  if (!ledger::FileLedger::IsLedgerDirectory(dir)) {
    LATCH_RETURN_IF_ERROR(ledger::FileLedger::Create(dir, config.origin));
  }
  // Read-only: a running collector holds it for writing.
  std::unique_ptr<ledger::FileLedger> l;
  LATCH_RETURN_IF_ERROR(ledger::FileLedger::Open(dir, ledger::FileLedger::Mode::kReadOnly, &l));
  *out = l->verifier();
  return Status::Ok();
}

Status InitPostgresStorage(const CollectorConfig& config, std::string* vkey) {
  if (config.storage_postgres.empty()) {
    return Status::InvalidArgument("the config has no [storage] postgres to initialise");
  }
  const std::string path = config.ledger_key_path();
  tlog::NoteSigner signer;
  Status s = LoadSigner(config, &signer);
  if (s.code() == Status::Code::kNotFound) {
    LATCH_RETURN_IF_ERROR(tlog::NoteSigner::Generate(config.origin, &signer));
    const size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
    const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    LATCH_RETURN_IF_ERROR(storage::WriteFileAtomically(dir.empty() ? "/" : dir, name,
                                                       signer.ToString() + "\n", 0600));
    logging::Default().Info("made the ledger's signing key", {{"key", path}});
  } else {
    LATCH_RETURN_IF_ERROR(s);
  }
  LATCH_RETURN_IF_ERROR(
      ledger::postgres::PostgresLog::Init(config.storage_postgres, config.origin, kSetting));
  *vkey = signer.verifier().ToString();
  return Status::Ok();
}

}  // namespace latch::collector
