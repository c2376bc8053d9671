// PgConnection: one libpq connection, with the few calls the ledger's
// PostgreSQL storage makes: statements with text or binary parameters,
// results read by row and column, and transactions. Every failure is a
// Status naming what was being done and PostgreSQL's own message, on one
// line. Not thread-safe: one user at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lib/status/status.h"

struct pg_conn;
struct pg_result;

namespace latch::ledger::postgres {

// A statement's parameter: text, or bytes sent as binary (bytea).
struct PgParam {
  std::string value;
  bool binary = false;
  bool null = false;
  static PgParam Text(std::string v) { return {std::move(v), false, false}; }
  static PgParam Bytes(std::string v) { return {std::move(v), true, false}; }
  static PgParam Int(int64_t v) { return {std::to_string(v), false, false}; }
};

// A statement for ExecPipeline.
struct PgStatement {
  std::string what;  // names the step in errors
  std::string sql;
  std::vector<PgParam> params;
};

// A statement's result: rows of columns, each text or bytes (binary_results).
class PgResult {
 public:
  explicit PgResult(pg_result* r);
  ~PgResult();
  PgResult(PgResult&& other) noexcept;
  PgResult& operator=(PgResult&&) = delete;
  PgResult(const PgResult&) = delete;

  int rows() const;
  // Rows an UPDATE, INSERT or DELETE changed.
  uint64_t affected() const;
  bool is_null(int row, int column) const;
  std::string value(int row, int column) const;         // raw bytes (binary results: as sent)
  Status Int(int row, int column, int64_t* out) const;  // a text-format integer column

 private:
  pg_result* result_;
};

class PgConnection {
 public:
  // `conninfo`: a libpq connection string or URI ("postgresql://..."), with
  // several hosts and target_session_attrs=read-write where a standby may
  // be promoted. `setting` names where it came from, for errors.
  static Status Connect(const std::string& conninfo, const std::string& setting,
                        std::unique_ptr<PgConnection>* out);
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // Runs `sql` with $1.. parameters; results in text form unless
  // `binary_results`. `what` names the step in errors.
  Status Exec(const std::string& what, const std::string& sql, const std::vector<PgParam>& params,
              std::optional<PgResult>* result = nullptr, bool binary_results = false);
  // A statement without parameters or results (DDL, BEGIN, COMMIT).
  Status Exec(const std::string& what, const std::string& sql);

  // Sends every statement at once (libpq's pipeline mode: one round trip
  // rather than one each), then reads their results. On the first error the
  // server skips the rest up to the end of the pipeline (so a failed
  // statement inside BEGIN..COMMIT rolls the transaction back); *failed is
  // its index (statements.size() if none failed) and *sqlstate its code.
  // Results with rows are not returned: for writes.
  Status ExecPipeline(const std::vector<PgStatement>& statements, size_t* failed,
                      std::string* sqlstate);

  // Whether the connection is still usable (not broken by the server going).
  bool ok() const;
  // Where it is connected, for logs: host, port, database.
  std::string Describe() const;

 private:
  explicit PgConnection(pg_conn* conn) : conn_(conn) {}
  // OK, or the Status for a failed result (IoError if the connection broke).
  Status Check(const std::string& what, const pg_result* raw, std::string* sqlstate);
  pg_conn* conn_;
};

// BEGIN now; ROLLBACK when destroyed unless Commit() succeeded.
class PgTransaction {
 public:
  explicit PgTransaction(PgConnection& c) : conn_(c) {}
  ~PgTransaction();
  Status Begin(const std::string& isolation = "");
  Status Commit();

 private:
  PgConnection& conn_;
  bool open_ = false;
};

}  // namespace latch::ledger::postgres
