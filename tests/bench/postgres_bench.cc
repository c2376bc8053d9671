// postgres_bench: durable appends per second into the ledger kept in
// PostgreSQL (issue 17), side by side in one run with its floor and with the
// file ledger, on a PostgreSQL 15 cluster the benchmark starts in its own
// directory (fsync on, synchronous_commit on: every commit durable).
//
// The floor: the same entry bytes written with the same transaction cadence
// into a plain table: per batch, one transaction inserting the batch's
// bytes as rows of at most 256 entries each (as many rows as the ledger's
// bundles) and committing, sent in one round trip (libpq's pipeline mode, as
// a multi-row INSERT would be). No hashing, no tree, no checkpoint: what any
// durable store of these bytes in PostgreSQL pays.
//
//   build/tests/postgres_bench [--entries N] [--entry-size B] [--batch E]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "collector/ledger/file_ledger.h"
#include "collector/ledger/postgres/pg_connection.h"
#include "collector/ledger/postgres/postgres_ledger.h"
#include "collector/ledger/verifier.h"
#include "postgres_cluster.h"
#include "temp_dir.h"

namespace {

using namespace latch;
using Clock = std::chrono::steady_clock;

struct Options {
  uint64_t entries = 1'000'000;
  size_t entry_size = 200;
  uint64_t batch = 1000;
};

// Entry i: `size` pseudo-random bytes (xorshift64 seeded by i), so that
// PostgreSQL's compression cannot make either side's rows small.
std::string Entry(uint64_t i, size_t size) {
  std::string e(size, '\0');
  uint64_t x = i * 0x9e3779b97f4a7c15ull + 1;
  for (size_t at = 0; at < size; ++at) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    e[at] = static_cast<char>(x);
  }
  return e;
}

// The floor's table, and its one-transaction write of one batch.
class Floor {
 public:
  bool Open(const std::string& conninfo) {
    using namespace ledger::postgres;
    return PgConnection::Connect(conninfo, "floor", &c_).ok() &&
           c_->Exec("table", "CREATE TABLE floor_rows (id bigint PRIMARY KEY, data bytea NOT NULL)")
               .ok();
  }
  // One transaction per batch: rows of at most 256 entries, each a
  // length-prefixed entry as in a bundle. Built before the clock starts, as
  // the ledger's batches are.
  std::vector<ledger::postgres::PgStatement> Batch(uint64_t from, uint64_t to,
                                                   const Options& opts) {
    using namespace ledger::postgres;
    std::vector<PgStatement> statements{{"begin", "BEGIN", {}}};
    for (uint64_t at = from; at < to; at += 256) {
      std::string bytes;
      for (uint64_t i = at; i < std::min(to, at + 256); ++i) {
        const std::string e = Entry(i, opts.entry_size);
        bytes.push_back(static_cast<char>(e.size() >> 8));
        bytes.push_back(static_cast<char>(e.size() & 0xff));
        bytes += e;
      }
      statements.push_back({"insert",
                            "INSERT INTO floor_rows (id, data) VALUES ($1, $2)",
                            {PgParam::Int(static_cast<int64_t>(row_++)), PgParam::Bytes(bytes)}});
    }
    statements.push_back({"commit", "COMMIT", {}});
    return statements;
  }
  // In one round trip, as a multi-row INSERT or COPY would take.
  Status Write(const std::vector<ledger::postgres::PgStatement>& statements) {
    size_t failed = 0;
    std::string sqlstate;
    return c_->ExecPipeline(statements, &failed, &sqlstate);
  }

 private:
  std::unique_ptr<ledger::postgres::PgConnection> c_;
  uint64_t row_ = 0;
};

// Seconds each side spent.
struct Times {
  double floor_s = 0;    // the floor's transactions
  double db_s = 0;       // the PostgreSQL ledger's commits
  double files_s = 0;    // the file ledger's commits
  double hashing_s = 0;  // building the batches (leaf hashes), shared by both ledgers
};

// Writes every entry, batch by batch, to the floor, the PostgreSQL ledger and
// the file ledger in turn (who goes first alternates by batch), so that all
// three meet the same database and machine: the same WAL segments being
// made, the same checkpoints and vacuums. Run one after the other instead,
// whichever goes first gains up to 1.6x.
Times Fill(Floor& floor, ledger::Ledger& db, ledger::Ledger& files, const Options& opts) {
  Times t;
  auto timed = [](double* total, auto&& what) {
    const auto start = Clock::now();
    Status s = what();
    *total += std::chrono::duration<double>(Clock::now() - start).count();
    if (!s.ok()) {
      std::fprintf(stderr, "postgres_bench: %s\n", s.ToString().c_str());
      std::exit(1);
    }
  };
  uint64_t round = 0;
  for (uint64_t from = 0; from < opts.entries; from += opts.batch, ++round) {
    const uint64_t to = std::min(opts.entries, from + opts.batch);
    ledger::EntryBatch b;
    timed(&t.hashing_s, [&] {
      for (uint64_t i = from; i < to; ++i) {
        Status s = b.Add(Entry(i, opts.entry_size));
        if (!s.ok()) return s;
      }
      return Status::Ok();
    });
    const ledger::EntryBatch* batches[] = {&b};
    const auto statements = floor.Batch(from, to, opts);
    uint64_t first = 0;
    auto to_floor = [&] { timed(&t.floor_s, [&] { return floor.Write(statements); }); };
    auto to_db = [&] { timed(&t.db_s, [&] { return db.Commit(batches, &first); }); };
    if (round % 2 == 0) {
      to_floor();
      to_db();
    } else {
      to_db();
      to_floor();
    }
    timed(&t.files_s, [&] { return files.Commit(batches, &first); });
  }
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  Options opts;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const uint64_t v = std::strtoull(argv[i + 1], nullptr, 10);
    if (flag == "--entries") {
      opts.entries = v;
    } else if (flag == "--entry-size") {
      opts.entry_size = v;
    } else if (flag == "--batch") {
      opts.batch = v;
    } else {
      std::fprintf(stderr, "usage: postgres_bench [--entries N] [--entry-size B] [--batch E]\n");
      return 2;
    }
  }
  if (opts.entries == 0 || opts.batch == 0 || opts.entry_size == 0 ||
      opts.entry_size > ledger::kMaxEntrySize) {
    std::fprintf(stderr, "postgres_bench: entries, batch and entry-size must be positive\n");
    return 2;
  }
  testing::PostgresCluster cluster;
  const std::string why = cluster.Start();
  if (!why.empty()) {
    std::fprintf(stderr, "postgres_bench: PostgreSQL cannot start: %s\n", why.c_str());
    return 1;
  }
  const std::string origin = "bench.example/ledger";
  tlog::NoteSigner signer;
  if (!tlog::NoteSigner::Generate(origin, &signer).ok() ||
      !ledger::postgres::PostgresLog::Init(cluster.Conninfo(), origin).ok()) {
    std::fprintf(stderr, "postgres_bench: cannot set up the ledger\n");
    return 1;
  }
  std::printf("%llu entries of %zu bytes, %llu per commit (%llu commits), fsync on\n",
              static_cast<unsigned long long>(opts.entries), opts.entry_size,
              static_cast<unsigned long long>(opts.batch),
              static_cast<unsigned long long>((opts.entries + opts.batch - 1) / opts.batch));

  Floor floor;
  if (!floor.Open(cluster.Conninfo())) {
    std::fprintf(stderr, "postgres_bench: the floor cannot make its table\n");
    return 1;
  }
  std::unique_ptr<ledger::postgres::PostgresLedger> db;
  Status s = ledger::postgres::PostgresLedger::Open(cluster.Conninfo(), "bench", signer, &db);
  bool became = false;
  if (s.ok()) s = db->TryBecomeSequencer(&became);
  if (!s.ok() || !became) {
    std::fprintf(stderr, "postgres_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  ledger::TempDir dir;
  std::unique_ptr<ledger::Ledger> files;
  if (!ledger::FileLedger::Create(dir / "ledger", origin).ok() ||
      !ledger::FileLedger::Open(dir / "ledger", ledger::FileLedger::Mode::kReadWrite, &files)
           .ok()) {
    std::fprintf(stderr, "postgres_bench: cannot make the file ledger\n");
    return 1;
  }
  const Times t = Fill(floor, *db, *files, opts);
  const uint64_t rows = db->rows_written();

  const auto verify_start = Clock::now();
  ledger::VerifyResult v;
  s = ledger::VerifyLog(*db, signer.verifier(), &v);
  const double verify_s = std::chrono::duration<double>(Clock::now() - verify_start).count();
  if (!s.ok() || v.checkpoint.size != opts.entries) {
    std::fprintf(stderr, "postgres_bench: the database's ledger does not verify: %s\n",
                 s.ToString().c_str());
    return 1;
  }
  const double n = static_cast<double>(opts.entries);
  std::printf("%-40s %9.0f entries/s  (%.2f s)\n",
              "floor (plain table, same bytes/commits):", n / t.floor_s, t.floor_s);
  std::printf("%-40s %9.0f entries/s  (%.2f s in commits)  %llu rows\n",
              "ledger in PostgreSQL:", n / t.db_s, t.db_s, static_cast<unsigned long long>(rows));
  std::printf("%-40s %9.0f entries/s  (%.2f s in commits)\n",
              "ledger in files (same batches):", n / t.files_s, t.files_s);
  std::printf("%-40s %9.0f entries/s  (%.2f s; the collector does it on producers' threads)\n",
              "building batches (leaf hashes):", n / t.hashing_s, t.hashing_s);
  std::printf("ratio PostgreSQL ledger / floor: %.2f (target >= 0.6); with hashing %.2f\n",
              t.floor_s / t.db_s, t.floor_s / (t.db_s + t.hashing_s));
  std::printf("verify from PostgreSQL: %.0f entries/s (%.2f s)\n", n / verify_s, verify_s);
  return 0;
}
