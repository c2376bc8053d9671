// latch-ledger: create, append to, inspect, prove and verify a Latch ledger.
// Every failure prints one line "latch-ledger: <what went wrong>" and exits
// non-zero; nothing is changed by a command that fails.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "collector/index/event_index.h"
#include "collector/index/index_follower.h"
#include "collector/ledger/batcher.h"
#include "collector/ledger/exporter.h"
#include "collector/ledger/file_ledger.h"
#include "collector/ledger/postgres/postgres_log.h"
#include "collector/ledger/tile_hash_reader.h"
#include "collector/ledger/tile_source.h"
#include "collector/ledger/verifier.h"
#include "lib/storage/append_file.h"
#include "lib/tlog/base64.h"
#include "lib/tlog/checkpoint.h"
#include "lib/tlog/proof.h"
#include "lib/tlog/tree_reader.h"

namespace {

using latch::Status;
using latch::ledger::FileLedger;
using latch::ledger::Ledger;

// Exit codes: 0 success, 1 failure (bad input, I/O, or verification), 2 usage.
constexpr int kExitFailure = 1;

int Fail(const Status& s) {
  std::fprintf(stderr, "latch-ledger: %s\n", s.ToString().c_str());
  return kExitFailure;
}

std::string TrimNewlines(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

// A verifier key from --vkey: either the key text itself or a file holding it.
Status LoadVerifier(const std::string& vkey_arg, const std::string& dir,
                    latch::tlog::NoteVerifier* out) {
  std::string text = vkey_arg;
  if (text.empty()) {
    Status s = latch::storage::ReadWholeFile(dir + "/vkey", &text);
    if (!s.ok()) {
      return Status::InvalidArgument(dir + " has no vkey file; pass the log's key with --vkey");
    }
  } else if (text.find('+') == std::string::npos) {
    LATCH_RETURN_IF_ERROR(latch::storage::ReadWholeFile(vkey_arg, &text));
  }
  return latch::tlog::NoteVerifier::Parse(TrimNewlines(text), out);
}

Status OpenLedger(const std::string& dir, FileLedger::Mode mode, std::unique_ptr<Ledger>* out) {
  return FileLedger::Open(dir, mode, out);
}

void PrintProof(const std::vector<latch::tlog::Hash>& proof) {
  for (const auto& h : proof) std::printf("%s\n", latch::tlog::Base64Encode(h).c_str());
}

int CmdInit(const std::string& dir, const std::string& origin) {
  Status s = FileLedger::Create(dir, origin);
  if (!s.ok()) return Fail(s);
  std::unique_ptr<Ledger> ledger;
  s = OpenLedger(dir, FileLedger::Mode::kReadOnly, &ledger);
  if (!s.ok()) return Fail(s);
  std::printf("%s\n", ledger->verifier().ToString().c_str());
  return 0;
}

int CmdVkey(const std::string& dir) {
  std::unique_ptr<Ledger> ledger;
  Status s = OpenLedger(dir, FileLedger::Mode::kReadOnly, &ledger);
  if (!s.ok()) return Fail(s);
  std::printf("%s\n", ledger->verifier().ToString().c_str());
  return 0;
}

// Calls `line` for each line of `fd` (without its newline; a last line
// without one counts, as with getline), reading a megabyte at a time: stdin
// through synchronised iostreams cost more than the ledger itself (issue 15:
// 1M lines of 200 bytes took 3.8 s).
Status ForEachLine(int fd, const std::function<Status(std::string_view)>& line) {
  std::string buffer;
  size_t start = 0;  // where the current line begins in `buffer`
  std::vector<char> block(1 << 20);
  while (true) {
    ssize_t n = ::read(fd, block.data(), block.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("reading stdin", errno);
    if (n == 0) break;
    buffer.erase(0, start);
    start = 0;
    buffer.append(block.data(), static_cast<size_t>(n));
    for (size_t nl; (nl = buffer.find('\n', start)) != std::string::npos; start = nl + 1) {
      LATCH_RETURN_IF_ERROR(line(std::string_view(buffer).substr(start, nl - start)));
    }
  }
  if (start < buffer.size()) LATCH_RETURN_IF_ERROR(line(std::string_view(buffer).substr(start)));
  return Status::Ok();
}

int CmdAppend(const std::string& dir) {
  std::unique_ptr<Ledger> ledger;
  Status s = OpenLedger(dir, FileLedger::Mode::kReadWrite, &ledger);
  if (!s.ok()) return Fail(s);
  // Read and validate all of stdin before appending anything, so that a bad
  // line (an entry over the size limit) changes nothing.
  constexpr size_t kGroup = 4096;
  std::vector<latch::ledger::EntryBatch> groups(1);
  uint64_t lineno = 0;
  s = ForEachLine(STDIN_FILENO, [&](std::string_view line) {
    ++lineno;
    if (groups.back().size() == kGroup) groups.emplace_back();
    Status added = groups.back().Add(line);
    return added.ok() ? added : added.WithContext("stdin line " + std::to_string(lineno));
  });
  if (!s.ok()) return Fail(s);
  Status first_error;
  {
    latch::ledger::Batcher batcher(*ledger, latch::ledger::BatcherOptions{});
    std::mutex mu;
    for (auto& g : groups) {
      if (g.empty()) continue;
      batcher.Submit(std::move(g), [&](const Status& st, uint64_t) {
        std::lock_guard lock(mu);
        if (!st.ok() && first_error.ok()) first_error = st;
      });
    }
    // ~Batcher commits everything still pending and runs its callbacks.
  }
  // Checked once every commit has reported: a failure of the last one
  // must not print a checkpoint and exit 0.
  if (!first_error.ok()) return Fail(first_error);
  std::fputs(ledger->checkpoint_note().c_str(), stdout);
  return 0;
}

int CmdCheckpoint(const std::string& dir) {
  std::unique_ptr<Ledger> ledger;
  Status s = OpenLedger(dir, FileLedger::Mode::kReadOnly, &ledger);
  if (!s.ok()) return Fail(s);
  std::fputs(ledger->checkpoint_note().c_str(), stdout);
  return 0;
}

void PrintVerified(const std::string& where, const latch::ledger::VerifyResult& result,
                   const latch::tlog::NoteVerifier& key) {
  std::printf("ok: %s verified: %llu entries, %llu tiles and bundles, checkpoint signed by %s\n",
              where.c_str(), static_cast<unsigned long long>(result.checkpoint.size),
              static_cast<unsigned long long>(result.tiles_checked), key.ToString().c_str());
}

void PrintExported(const latch::ledger::ExportResult& result, const std::string& out) {
  std::printf("exported %llu entries as %llu files to %s\n",
              static_cast<unsigned long long>(result.size),
              static_cast<unsigned long long>(result.files), out.c_str());
}

// --witness (issue 18): the witnesses an auditor pins, and the witnessed
// checkpoint to hold the ledger to (by default the one the collector keeps
// beside a ledger directory).
struct WitnessArgs {
  std::vector<std::string> keys;  // text or files
  size_t quorum = 0;              // 0: all of them
  std::string witnessed;          // a file
};

Status LoadDemand(const WitnessArgs& args, latch::ledger::WitnessDemand* demand) {
  for (const std::string& arg : args.keys) {
    std::string text = arg;
    if (text.find('+') == std::string::npos) {
      LATCH_RETURN_IF_ERROR(latch::storage::ReadWholeFile(arg, &text).WithContext("--witness"));
    }
    latch::tlog::CosignatureVerifier key;
    LATCH_RETURN_IF_ERROR(
        latch::tlog::CosignatureVerifier::Parse(TrimNewlines(text), &key).WithContext("--witness"));
    demand->witnesses.push_back(key);
  }
  demand->quorum = args.quorum == 0 ? demand->witnesses.size() : args.quorum;
  if (demand->quorum > demand->witnesses.size()) {
    return Status::InvalidArgument("--quorum " + std::to_string(args.quorum) +
                                   " is more than the " + std::to_string(demand->witnesses.size()) +
                                   " --witness keys");
  }
  return Status::Ok();
}

// After VerifyLog: the witnessed checkpoint checked against the verified log.
int CheckWitnessedOrFail(latch::ledger::TileSource& source, const std::string& where,
                         const latch::ledger::VerifyResult& verified,
                         const latch::tlog::NoteVerifier& key, const WitnessArgs& args) {
  if (args.keys.empty()) {
    if (args.quorum != 0 || !args.witnessed.empty()) {
      return Fail(Status::InvalidArgument("--quorum and --witnessed need --witness"));
    }
    return 0;
  }
  latch::ledger::WitnessDemand demand;
  Status s = LoadDemand(args, &demand);
  if (!s.ok()) return Fail(s);
  if (args.witnessed.empty()) {
    return Fail(Status::InvalidArgument(
        "--witness needs the witnessed checkpoint: --witnessed FILE (the collector's "
        "/checkpoint, or <data_dir>/witnessed.checkpoint)"));
  }
  std::string note;
  s = latch::storage::ReadWholeFile(args.witnessed, &note);
  if (!s.ok()) return Fail(s.WithContext("--witnessed"));
  latch::ledger::WitnessedResult w;
  s = latch::ledger::CheckWitnessed(source, verified.checkpoint.size, key, note, demand, &w);
  if (!s.ok()) return Fail(s.WithContext("verify " + where + " against " + args.witnessed));
  std::string names;
  for (size_t i : w.cosigned) names += (names.empty() ? "" : ", ") + demand.witnesses[i].name();
  std::printf(
      "ok: witnessed: the first %llu entries, cosigned by %zu of %zu witnesses (%s; %zu "
      "required); %llu later entries not witnessed yet\n",
      static_cast<unsigned long long>(w.checkpoint.size), w.cosigned.size(),
      demand.witnesses.size(), names.c_str(), demand.quorum,
      static_cast<unsigned long long>(verified.checkpoint.size - w.checkpoint.size));
  return 0;
}

int CmdVerify(const std::string& dir, const std::string& vkey, WitnessArgs witness) {
  latch::tlog::NoteVerifier key;
  Status s = LoadVerifier(vkey, dir, &key);
  if (!s.ok()) return Fail(s);
  latch::ledger::VerifyResult result;
  std::unique_ptr<Ledger> ledger;
  std::unique_ptr<latch::ledger::DirectoryTileSource> tiles;
  latch::ledger::TileSource* source = nullptr;
  if (FileLedger::IsLedgerDirectory(dir)) {
    s = OpenLedger(dir, FileLedger::Mode::kReadOnly, &ledger);
    if (!s.ok()) return Fail(s);
    source = ledger.get();
    // The collector keeps its witnessed checkpoint beside its ledger.
    const std::string beside =
        std::filesystem::path(dir).lexically_normal().parent_path() / "witnessed.checkpoint";
    std::error_code ec;
    if (witness.witnessed.empty() && std::filesystem::is_regular_file(beside, ec)) {
      witness.witnessed = beside;
    }
  } else {
    tiles = std::make_unique<latch::ledger::DirectoryTileSource>(dir);
    source = tiles.get();
  }
  s = latch::ledger::VerifyLog(*source, key, &result);
  if (!s.ok()) return Fail(s.WithContext("verify " + dir));
  PrintVerified(dir, result, key);
  return CheckWitnessedOrFail(*source, dir, result, key, witness);
}

// --storage: the ledger kept in PostgreSQL (issue 17), and its key, which
// must come from elsewhere (--vkey): the database is not trusted for it.
Status OpenStorage(const std::string& conninfo, const std::string& vkey,
                   latch::tlog::NoteVerifier* key,
                   std::unique_ptr<latch::ledger::postgres::PostgresLog>* log) {
  if (vkey.empty()) {
    return Status::InvalidArgument("--storage needs --vkey (the ledger's verifier key)");
  }
  LATCH_RETURN_IF_ERROR(LoadVerifier(vkey, "", key));
  return latch::ledger::postgres::PostgresLog::Open(conninfo, "--storage", "", log);
}

int CmdVerifyStorage(const std::string& conninfo, const std::string& vkey,
                     const WitnessArgs& witness) {
  latch::tlog::NoteVerifier key;
  std::unique_ptr<latch::ledger::postgres::PostgresLog> log;
  Status s = OpenStorage(conninfo, vkey, &key, &log);
  if (!s.ok()) return Fail(s);
  latch::ledger::VerifyResult result;
  s = latch::ledger::VerifyLog(*log, key, &result);
  if (!s.ok()) return Fail(s.WithContext("verify " + log->Describe()));
  PrintVerified(log->Describe(), result, key);
  return CheckWitnessedOrFail(*log, log->Describe(), result, key, witness);
}

// migrate: a file ledger copied into PostgreSQL, then read back and compared.
int CmdMigrate(const std::string& dir, const std::string& conninfo) {
  std::unique_ptr<Ledger> ledger;
  Status s = OpenLedger(dir, FileLedger::Mode::kReadOnly, &ledger);
  if (!s.ok()) return Fail(s);
  const std::string origin = ledger->checkpoint().origin;
  s = latch::ledger::postgres::PostgresLog::Init(conninfo, origin);
  if (!s.ok()) return Fail(s.WithContext("--to"));
  std::unique_ptr<latch::ledger::postgres::PostgresLog> log;
  s = latch::ledger::postgres::PostgresLog::Open(conninfo, "--to", origin, &log);
  if (!s.ok()) return Fail(s);
  latch::ledger::postgres::MigrateResult r;
  s = latch::ledger::postgres::MigrateLog(*ledger, ledger->verifier(), *log, &r);
  if (!s.ok()) return Fail(s.WithContext("migrate"));
  std::printf(
      "migrated %s to %s: %llu entries; %llu tiles and bundles written, %llu already there; "
      "%llu read back identical\n",
      dir.c_str(), log->Describe().c_str(), static_cast<unsigned long long>(r.size),
      static_cast<unsigned long long>(r.tiles_written),
      static_cast<unsigned long long>(r.tiles_present),
      static_cast<unsigned long long>(r.tiles_checked));
  return 0;
}

// export --storage: the tiles the database serves, as a static tree.
int CmdExportStorage(const std::string& conninfo, const std::string& vkey, const std::string& out) {
  latch::tlog::NoteVerifier key;
  std::unique_ptr<latch::ledger::postgres::PostgresLog> log;
  Status s = OpenStorage(conninfo, vkey, &key, &log);
  if (!s.ok()) return Fail(s);
  latch::ledger::ExportResult result;
  s = latch::ledger::ExportLog(*log, key, out, &result);
  if (!s.ok()) return Fail(s.WithContext("export"));
  PrintExported(result, out);
  return 0;
}

int CmdExport(const std::string& dir, const std::string& out) {
  std::unique_ptr<Ledger> ledger;
  Status s = OpenLedger(dir, FileLedger::Mode::kReadOnly, &ledger);
  if (!s.ok()) return Fail(s);
  latch::ledger::ExportResult result;
  s = latch::ledger::ExportLog(*ledger, ledger->verifier(), out, &result);
  if (!s.ok()) return Fail(s.WithContext("export"));
  PrintExported(result, out);
  return 0;
}

struct ProveArgs {
  std::string dir;
  std::string storage;  // a PostgreSQL connection string instead of dir
  std::string vkey;
  int64_t index = -1;
  int64_t size = -1;
  int64_t from = -1;
  int64_t to = -1;
  std::string since;
};

// What prove reads: a ledger's own files, or an exported tlog-tiles tree.
// Either way the tree is the one its signed checkpoint names: an export's
// checkpoint is checked with --vkey (or DIR/vkey), and its tiles must lead
// to that checkpoint's root, so a proof is never computed from tiles that
// were changed after the export.
struct ProofTree {
  std::unique_ptr<Ledger> ledger;
  std::unique_ptr<latch::ledger::TileSource> tiles;  // an export's, or the database's
  std::unique_ptr<latch::ledger::TileHashReader> tile_hashes;
  latch::tlog::NoteVerifier key;
  latch::tlog::Checkpoint checkpoint;
  latch::tlog::StoredHashReader* hashes = nullptr;
};

Status OpenServedTree(const std::string& where, ProofTree* t);

Status OpenProofTree(const std::string& dir, const std::string& vkey, ProofTree* t) {
  if (FileLedger::IsLedgerDirectory(dir)) {
    LATCH_RETURN_IF_ERROR(OpenLedger(dir, FileLedger::Mode::kReadOnly, &t->ledger));
    t->key = t->ledger->verifier();
    t->checkpoint = t->ledger->checkpoint();
    t->hashes = t->ledger.get();
    if (vkey.empty()) return Status::Ok();
    // A key from elsewhere must also sign the ledger's checkpoint.
    LATCH_RETURN_IF_ERROR(LoadVerifier(vkey, dir, &t->key));
    return latch::tlog::OpenCheckpoint(t->ledger->checkpoint_note(), t->key, &t->checkpoint)
        .WithContext(dir + "/checkpoint");
  }
  std::error_code ec;
  if (!std::filesystem::is_regular_file(dir + "/checkpoint", ec)) {
    return Status::InvalidArgument(dir +
                                   " is neither a ledger nor an exported tree (no checkpoint)");
  }
  LATCH_RETURN_IF_ERROR(LoadVerifier(vkey, dir, &t->key));
  t->tiles = std::make_unique<latch::ledger::DirectoryTileSource>(dir);
  return OpenServedTree(dir, t);
}

// A tree from what a TileSource serves (an export, the database): its
// checkpoint signed by t->key, and tiles that lead to the checkpoint's root.
Status OpenServedTree(const std::string& where, ProofTree* t) {
  std::string note;
  LATCH_RETURN_IF_ERROR(t->tiles->ReadCheckpoint(&note));
  LATCH_RETURN_IF_ERROR(
      latch::tlog::OpenCheckpoint(note, t->key, &t->checkpoint).WithContext(where + "/checkpoint"));
  t->tile_hashes = std::make_unique<latch::ledger::TileHashReader>(*t->tiles, t->checkpoint.size);
  t->hashes = t->tile_hashes.get();
  latch::tlog::Hash root;
  latch::tlog::TreeReader reader(*t->hashes);
  LATCH_RETURN_IF_ERROR(reader.Root(t->checkpoint.size, &root).WithContext(where));
  if (root != t->checkpoint.root) {
    return Status::VerifyFailed(where + ": the tiles do not lead to the checkpoint's root");
  }
  return Status::Ok();
}

// prove --storage: the tree the database serves, with a key from elsewhere.
Status OpenStorageProofTree(const std::string& conninfo, const std::string& vkey, ProofTree* t) {
  std::unique_ptr<latch::ledger::postgres::PostgresLog> log;
  LATCH_RETURN_IF_ERROR(OpenStorage(conninfo, vkey, &t->key, &log));
  const std::string where = log->Describe();
  t->tiles = std::move(log);
  return OpenServedTree(where, t);
}

Status CheckWithin(uint64_t size, uint64_t current) {
  if (size <= current) return Status::Ok();
  return Status::InvalidArgument("size " + std::to_string(size) + " is beyond the tree of size " +
                                 std::to_string(current));
}

int CmdProve(const ProveArgs& a) {
  ProofTree tree;
  Status s = a.storage.empty() ? OpenProofTree(a.dir, a.vkey, &tree)
                               : OpenStorageProofTree(a.storage, a.vkey, &tree);
  const std::string name = a.storage.empty() ? a.dir : "the database";
  if (!s.ok()) return Fail(s);
  const uint64_t current = tree.checkpoint.size;
  latch::tlog::TreeReader reader(*tree.hashes);
  std::vector<latch::tlog::Hash> proof;
  if (a.index >= 0) {
    uint64_t size = a.size >= 0 ? static_cast<uint64_t>(a.size) : current;
    s = CheckWithin(size, current);
    if (s.ok()) s = reader.InclusionProof(static_cast<uint64_t>(a.index), size, &proof);
    if (!s.ok()) return Fail(s);
    PrintProof(proof);
    return 0;
  }
  if (!a.since.empty()) {
    // Rollback and fork detection: the saved checkpoint must be a prefix of
    // the current one. Both signatures are checked with the same key.
    std::string note;
    latch::tlog::Checkpoint old_cp;
    s = latch::storage::ReadWholeFile(a.since, &note);
    if (s.ok()) s = latch::tlog::OpenCheckpoint(note, tree.key, &old_cp);
    if (!s.ok()) return Fail(s.WithContext(a.since));
    const latch::tlog::Checkpoint& now = tree.checkpoint;
    if (old_cp.size > now.size) {
      return Fail(Status::VerifyFailed(name + " was rolled back: it has " +
                                       std::to_string(now.size) + " entries, but " + a.since +
                                       " is signed for " + std::to_string(old_cp.size)));
    }
    s = reader.ConsistencyProof(old_cp.size, now.size, &proof);
    // Every tree extends the empty one; there is nothing to prove from size 0.
    if (s.ok() && old_cp.size > 0)
      s = latch::tlog::VerifyConsistency(old_cp.size, now.size, proof, old_cp.root, now.root);
    if (!s.ok()) {
      return Fail(s.WithContext(name + " is not consistent with " + a.since + " (size " +
                                std::to_string(old_cp.size) + ")"));
    }
    PrintProof(proof);
    return 0;
  }
  uint64_t to = a.to >= 0 ? static_cast<uint64_t>(a.to) : current;
  s = CheckWithin(to, current);
  if (s.ok()) s = reader.ConsistencyProof(static_cast<uint64_t>(a.from), to, &proof);
  if (!s.ok()) return Fail(s);
  PrintProof(proof);
  return 0;
}

// Rebuilds the events index from nothing but the ledger, into a new file
// that replaces the old one only once it is complete.
int CmdReindex(const std::string& dir, std::string index_path) {
  if (index_path.empty()) {
    std::filesystem::path p = std::filesystem::absolute(dir).lexically_normal();
    if (!p.has_filename()) p = p.parent_path();  // "data/ledger/"
    index_path = (p.parent_path() / "index.sqlite").string();
  }
  // Read-write takes the ledger's lock: a running collector (which keeps its
  // own index current) makes this fail instead of racing it.
  std::unique_ptr<Ledger> ledger;
  Status s = OpenLedger(dir, FileLedger::Mode::kReadWrite, &ledger);
  if (!s.ok()) {
    return Fail(
        s.WithContext("opening the ledger (stop latch-collector first: it keeps the index "
                      "itself)"));
  }
  std::string tmp = index_path + ".rebuild";
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(tmp + suffix, ec);
  auto start = std::chrono::steady_clock::now();
  {
    std::unique_ptr<latch::index::EventIndex> index;
    s = latch::index::EventIndex::Open(
        tmp, ledger->checkpoint().origin,
        [&](uint64_t size, latch::tlog::Hash* root) { return ledger->RootAt(size, root); }, &index);
    if (s.ok()) {
      uint64_t total = ledger->size();
      s = latch::index::IndexLedger(*ledger, index.get(), {}, [&](uint64_t done, bool searchable) {
        std::fprintf(stderr, "\rlatch-ledger: indexed %llu of %llu entries%s",
                     static_cast<unsigned long long>(done), static_cast<unsigned long long>(total),
                     !searchable && done == total ? "; building the search indexes" : "");
      });
      if (total > 0) std::fputc('\n', stderr);
    }
  }
  if (!s.ok()) return Fail(s);
  for (const char* suffix : {"-wal", "-shm"}) std::filesystem::remove(index_path + suffix, ec);
  std::filesystem::rename(tmp, index_path, ec);
  if (ec) return Fail(Status::FromErrno("replacing " + index_path, ec.value()));
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%s: %llu entries indexed in %.2f s\n", index_path.c_str(),
              static_cast<unsigned long long>(ledger->size()), secs);
  return 0;
}

}  // namespace

static int Main(int argc, char** argv) {
  CLI::App app{
      "latch-ledger: the Latch audit ledger, an append-only Merkle log with signed C2SP\n"
      "checkpoints and tlog-tiles, verifiable offline.\n\n"
      "Examples:\n"
      "  latch-ledger init /var/lib/latch/ledger --origin latch.example.com/ledger\n"
      "  printf 'hello\\nworld\\n' | latch-ledger append /var/lib/latch/ledger\n"
      "  latch-ledger verify /var/lib/latch/ledger\n"
      "  latch-ledger prove /var/lib/latch/ledger --index 0\n"
      "  latch-ledger prove /var/lib/latch/ledger --since saved-checkpoint\n"
      "  latch-ledger reindex /var/lib/latch/ledger   # with latch-collector stopped\n"};
  app.require_subcommand(1);
  std::string dir;
  std::string origin;
  std::string out;
  std::string vkey;
  ProveArgs prove;

  auto* init = app.add_subcommand("init", "Create a ledger in DIR and print its verifier key");
  init->add_option("DIR", dir, "Directory to create (absent or empty)")->required();
  init->add_option("--origin", origin, "Log origin, also the key name (e.g. example.com/ledger)")
      ->required();

  auto* vkey_cmd = app.add_subcommand("vkey", "Print the ledger's verifier key");
  vkey_cmd->add_option("DIR", dir, "Ledger directory")->required();

  auto* append = app.add_subcommand(
      "append", "Append each stdin line (without its newline) as one entry; print the checkpoint");
  append->add_option("DIR", dir, "Ledger directory")->required();

  auto* checkpoint = app.add_subcommand("checkpoint", "Print the latest signed checkpoint");
  checkpoint->add_option("DIR", dir, "Ledger directory")->required();

  auto* verify = app.add_subcommand(
      "verify", "Recompute every hash offline; DIR is a ledger or an exported tiles directory");
  verify->add_option("DIR", dir, "Ledger or exported directory");
  verify->add_option("--vkey", vkey,
                     "Verifier key (text or file); default: DIR/vkey. Required for exports and "
                     "--storage.");
  std::string storage;
  verify->add_option("--storage", storage,
                     "Verify the ledger kept in PostgreSQL instead (a libpq connection string)");
  WitnessArgs witness;
  verify->add_option("--witness", witness.keys,
                     "A witness's cosignature key (text or file), repeatable: the ledger must "
                     "extend a checkpoint cosigned by them");
  verify
      ->add_option("--quorum", witness.quorum,
                   "How many of the --witness keys must have cosigned (default: all)")
      ->check(CLI::Range(1, 1000));
  verify->add_option("--witnessed", witness.witnessed,
                     "The witnessed checkpoint (the collector's /checkpoint); default for a "
                     "ledger directory: witnessed.checkpoint beside it");

  auto* migrate = app.add_subcommand(
      "migrate", "Copy a file ledger into PostgreSQL, then read it back and compare");
  migrate->add_option("DIR", dir, "Ledger directory")->required();
  migrate->add_option("--to", storage, "PostgreSQL connection string (libpq)")->required();

  auto* export_cmd = app.add_subcommand("export", "Write a static tlog-tiles tree to OUT");
  export_cmd->add_option("DIR", dir, "Ledger directory (not with --storage)");
  export_cmd->add_option("OUT", out, "Output directory (absent or empty)");
  std::string export_storage, export_vkey;
  export_cmd->add_option("--storage", export_storage,
                         "Export the ledger kept in PostgreSQL instead (needs --vkey)");
  export_cmd->add_option("--vkey", export_vkey, "Verifier key (text or file), with --storage");

  auto* prove_cmd = app.add_subcommand(
      "prove", "Print an inclusion (--index) or consistency (--from, --since) proof, base64 lines");
  prove_cmd->add_option("DIR", prove.dir, "Ledger or exported directory");
  prove_cmd->add_option("--storage", prove.storage,
                        "Prove from the ledger kept in PostgreSQL instead (needs --vkey)");
  prove_cmd->add_option("--vkey", prove.vkey,
                        "Verifier key (text or file); default: DIR/vkey. Required for exports.");
  auto* index_opt = prove_cmd->add_option("--index", prove.index, "Leaf index to prove")
                        ->check(CLI::NonNegativeNumber);
  prove_cmd->add_option("--size", prove.size, "Tree size for --index (default: current)")
      ->check(CLI::NonNegativeNumber)
      ->needs(index_opt);
  auto* from_opt =
      prove_cmd->add_option("--from", prove.from, "Old tree size")->check(CLI::NonNegativeNumber);
  prove_cmd->add_option("--to", prove.to, "New tree size for --from (default: current)")
      ->check(CLI::NonNegativeNumber)
      ->needs(from_opt);
  auto* since_opt = prove_cmd->add_option(
      "--since", prove.since,
      "Saved checkpoint file: prove and check that the ledger still extends it (rollback check)");
  index_opt->excludes(from_opt)->excludes(since_opt);

  std::string index_path;
  auto* reindex = app.add_subcommand(
      "reindex", "Rebuild the events index from the ledger (latch-collector must be stopped)");
  reindex->add_option("DIR", dir, "Ledger directory")->required();
  reindex->add_option("--index", index_path,
                      "Index file (default: DIR/../index.sqlite, where latch-collector keeps it)");
  from_opt->excludes(since_opt);
  // An example under every subcommand's --help.
  init->footer(
      "Example:\n  latch-ledger init /var/lib/latch/ledger --origin latch.example.com/ledger");
  vkey_cmd->footer("Example:\n  latch-ledger vkey /var/lib/latch/ledger > ledger.vkey");
  append->footer(
      "Example:\n  printf 'hello\\nworld\\n' | latch-ledger append /var/lib/latch/ledger");
  checkpoint->footer(
      "Example:\n  latch-ledger checkpoint /var/lib/latch/ledger > saved-checkpoint   # keep it");
  verify->footer(
      "Examples:\n  latch-ledger verify /var/lib/latch/ledger\n"
      "  latch-ledger verify ./export --vkey ledger.vkey   # a copy, with a key from a trusted "
      "place\n"
      "  latch-ledger verify --storage 'postgresql://latch@db1/latch' --vkey ledger.vkey\n"
      "  latch-ledger verify /var/lib/latch-collector/ledger --witness w1.vkey --witness "
      "w2.vkey --quorum 1");
  export_cmd->footer(
      "Examples:\n  latch-ledger export /var/lib/latch/ledger ./export\n"
      "  latch-ledger export --storage 'postgresql://latch@db1/latch' --vkey ledger.vkey ./export");
  migrate->footer(
      "Example:\n  latch-ledger migrate /var/lib/latch-collector/ledger --to "
      "'postgresql://latch@db1,db2/latch?target_session_attrs=read-write'\n"
      "Run again to catch up; a database ahead of the files, or forked from them, is refused.");
  prove_cmd->footer(
      "Examples:\n  latch-ledger prove /var/lib/latch/ledger --index 41\n"
      "  latch-ledger prove /var/lib/latch/ledger --from 100 --to 200\n"
      "  latch-ledger prove /var/lib/latch/ledger --since saved-checkpoint   # exit 1 if "
      "rewritten\n"
      "  latch-ledger prove ./export --vkey ledger.vkey --since saved-checkpoint   # a copy");
  reindex->footer(
      "Example:\n  systemctl stop latch-collector && latch-ledger reindex "
      "/var/lib/latch-collector/ledger");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  if (*init) return CmdInit(dir, origin);
  if (*vkey_cmd) return CmdVkey(dir);
  if (*append) return CmdAppend(dir);
  if (*checkpoint) return CmdCheckpoint(dir);
  if (*verify) {
    if (dir.empty() == storage.empty()) {
      std::fprintf(stderr, "latch-ledger: verify needs DIR or --storage (one of them)\n");
      return 2;
    }
    return storage.empty() ? CmdVerify(dir, vkey, witness)
                           : CmdVerifyStorage(storage, vkey, witness);
  }
  if (*migrate) return CmdMigrate(dir, storage);
  if (*export_cmd) {
    if (!export_storage.empty()) {
      // With --storage the one positional word is OUT.
      if (!out.empty() || dir.empty()) {
        std::fprintf(stderr, "latch-ledger: export --storage CONNINFO --vkey KEY OUT\n");
        return 2;
      }
      return CmdExportStorage(export_storage, export_vkey, dir);
    }
    if (dir.empty() || out.empty()) {
      std::fprintf(stderr, "latch-ledger: export needs DIR and OUT\n");
      return 2;
    }
    return CmdExport(dir, out);
  }
  if (*reindex) return CmdReindex(dir, index_path);
  if (*prove_cmd) {
    if (prove.dir.empty() == prove.storage.empty()) {
      std::fprintf(stderr, "latch-ledger: prove needs DIR or --storage (one of them)\n");
      return 2;
    }
    if (index_opt->count() + from_opt->count() + since_opt->count() != 1) {
      std::fprintf(stderr, "latch-ledger: prove needs exactly one of --index, --from, --since\n");
      return 2;
    }
    return CmdProve(prove);
  }
  return 2;
}

int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    // Nothing we call is meant to throw; if something does, say so in one line.
    std::fprintf(stderr, "latch-ledger: unexpected error: %s\n", e.what());
    return 1;
  }
}
