#include "collector/ledger/postgres/pg_connection.h"

#include <libpq-fe.h>

#include <cstdlib>

namespace latch::ledger::postgres {

namespace {
// PostgreSQL's messages end with a newline, and may span lines: one line.
std::string OneLine(const char* message) {
  std::string s = message != nullptr ? message : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (char& c : s) {
    if (c == '\n') c = ' ';
  }
  return s;
}
}  // namespace

PgResult::PgResult(pg_result* r) : result_(r) {}
PgResult::~PgResult() {
  if (result_ != nullptr) PQclear(result_);
}
PgResult::PgResult(PgResult&& other) noexcept : result_(other.result_) { other.result_ = nullptr; }

int PgResult::rows() const { return PQntuples(result_); }

uint64_t PgResult::affected() const {
  const char* n = PQcmdTuples(result_);
  return n != nullptr && *n != '\0' ? std::strtoull(n, nullptr, 10) : 0;
}

bool PgResult::is_null(int row, int column) const { return PQgetisnull(result_, row, column) != 0; }

std::string PgResult::value(int row, int column) const {
  return {PQgetvalue(result_, row, column), static_cast<size_t>(PQgetlength(result_, row, column))};
}

Status PgResult::Int(int row, int column, int64_t* out) const {
  const std::string text = value(row, column);
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || end == nullptr || *end != '\0') {
    return Status::Corruption("not an integer in the database: '" + text + "'");
  }
  *out = v;
  return Status::Ok();
}

Status PgConnection::Connect(const std::string& conninfo, const std::string& setting,
                             std::unique_ptr<PgConnection>* out) {
  // Defaults first, so the connection string overrides them: a dead server
  // or machine is noticed within ~10 s (keepalives, unanswered writes), and
  // so is its lock on the sequencer (issue 17), not after the kernel's
  // two-hour default.
  const char* keys[] = {"connect_timeout",     "keepalives",       "keepalives_idle",
                        "keepalives_interval", "keepalives_count", "tcp_user_timeout",
                        "application_name",    "dbname",           nullptr};
  const char* values[] = {"5", "1", "2", "1", "3", "8000", "latch", conninfo.c_str(), nullptr};
  pg_conn* c = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (c == nullptr) return Status::IoError(setting + ": out of memory connecting to PostgreSQL");
  if (PQstatus(c) != CONNECTION_OK) {
    std::string why = OneLine(PQerrorMessage(c));
    PQfinish(c);
    return Status::IoError(setting + ": cannot connect to PostgreSQL: " + why);
  }
  out->reset(new PgConnection(c));
  return Status::Ok();
}

PgConnection::~PgConnection() { PQfinish(conn_); }

bool PgConnection::ok() const { return PQstatus(conn_) == CONNECTION_OK; }

std::string PgConnection::Describe() const {
  const char* host = PQhost(conn_);
  const char* port = PQport(conn_);
  const char* db = PQdb(conn_);
  return std::string(host != nullptr ? host : "?") + ":" + (port != nullptr ? port : "?") + "/" +
         (db != nullptr ? db : "?");
}

Status PgConnection::Exec(const std::string& what, const std::string& sql,
                          const std::vector<PgParam>& params, std::optional<PgResult>* result,
                          bool binary_results) {
  std::vector<const char*> values;
  std::vector<int> lengths, formats;
  for (const PgParam& p : params) {
    values.push_back(p.null ? nullptr : p.value.data());
    lengths.push_back(static_cast<int>(p.value.size()));
    formats.push_back(p.binary ? 1 : 0);
  }
  pg_result* raw =
      PQexecParams(conn_, sql.c_str(), static_cast<int>(params.size()), nullptr, values.data(),
                   lengths.data(), formats.data(), binary_results ? 1 : 0);
  PgResult r(raw);
  LATCH_RETURN_IF_ERROR(Check(what, raw, nullptr));
  if (result != nullptr) result->emplace(std::move(r));
  return Status::Ok();
}

Status PgConnection::Check(const std::string& what, const pg_result* raw, std::string* sqlstate) {
  if (raw == nullptr) {
    return Status::IoError(what + ": no result from PostgreSQL: " + OneLine(PQerrorMessage(conn_)));
  }
  const ExecStatusType status = PQresultStatus(raw);
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_PIPELINE_SYNC) {
    return Status::Ok();
  }
  if (status == PGRES_PIPELINE_ABORTED) {
    return Status::FailedPrecondition(what + ": not run (an earlier statement failed)");
  }
  const char* state = PQresultErrorField(raw, PG_DIAG_SQLSTATE);
  const std::string code = state != nullptr ? state : "";
  if (sqlstate != nullptr) *sqlstate = code;
  std::string message = what + ": " + OneLine(PQresultErrorMessage(raw));
  if (!code.empty()) message += " (SQLSTATE " + code + ")";
  // A connection that broke: libpq's own errors have no SQLSTATE; class 08
  // (connection exceptions) and 57P01-57P03 (the server shutting down or
  // starting) are the server saying so.
  if (PQstatus(conn_) != CONNECTION_OK || code.empty() || code.rfind("08", 0) == 0 ||
      code == "57P01" || code == "57P02" || code == "57P03") {
    return Status::IoError(message);
  }
  return Status::FailedPrecondition(message);
}

Status PgConnection::ExecPipeline(const std::vector<PgStatement>& statements, size_t* failed,
                                  std::string* sqlstate) {
  *failed = statements.size();
  if (PQenterPipelineMode(conn_) != 1) {
    return Status::IoError("entering pipeline mode: " + OneLine(PQerrorMessage(conn_)));
  }
  Status sent;
  for (const PgStatement& st : statements) {
    std::vector<const char*> values;
    std::vector<int> lengths, formats;
    for (const PgParam& p : st.params) {
      values.push_back(p.null ? nullptr : p.value.data());
      lengths.push_back(static_cast<int>(p.value.size()));
      formats.push_back(p.binary ? 1 : 0);
    }
    if (PQsendQueryParams(conn_, st.sql.c_str(), static_cast<int>(st.params.size()), nullptr,
                          values.data(), lengths.data(), formats.data(), 0) != 1) {
      sent = Status::IoError(st.what + ": " + OneLine(PQerrorMessage(conn_)));
      break;
    }
  }
  if (sent.ok() && PQpipelineSync(conn_) != 1) {
    sent = Status::IoError("ending the pipeline: " + OneLine(PQerrorMessage(conn_)));
  }
  if (!sent.ok()) {
    // The connection is broken (its owner reconnects) or the statements
    // were not all sent: none of them is committed without the sync.
    (void)PQexitPipelineMode(conn_);
    return sent;
  }
  // Each statement's result then a null; after the last, the sync.
  Status first_error;
  for (size_t i = 0; i < statements.size(); ++i) {
    pg_result* raw = PQgetResult(conn_);
    PgResult r(raw);
    Status s = Check(statements[i].what, raw, first_error.ok() ? sqlstate : nullptr);
    if (!s.ok() && first_error.ok()) {
      first_error = s;
      *failed = i;
    }
    if (raw == nullptr) break;  // the connection is gone
    while (pg_result* extra = PQgetResult(conn_)) PQclear(extra);
  }
  for (;;) {
    pg_result* raw = PQgetResult(conn_);
    if (raw == nullptr) break;
    const bool sync = PQresultStatus(raw) == PGRES_PIPELINE_SYNC;
    PQclear(raw);
    if (sync) break;
  }
  if (PQexitPipelineMode(conn_) != 1 && first_error.ok()) {
    first_error = Status::IoError("leaving pipeline mode: " + OneLine(PQerrorMessage(conn_)));
  }
  // A failure inside BEGIN..COMMIT leaves the transaction open and aborted
  // past the sync: end it, or every later statement on this connection
  // fails (SQLSTATE 25P02).
  if (!first_error.ok() && PQtransactionStatus(conn_) == PQTRANS_INERROR) {
    (void)Exec("rolling back", "ROLLBACK");
  }
  return first_error;
}

Status PgConnection::Exec(const std::string& what, const std::string& sql) {
  return Exec(what, sql, {});
}

PgTransaction::~PgTransaction() {
  if (open_) (void)conn_.Exec("rolling back", "ROLLBACK");
}

Status PgTransaction::Begin(const std::string& isolation) {
  LATCH_RETURN_IF_ERROR(
      conn_.Exec("beginning a transaction",
                 isolation.empty() ? "BEGIN" : "BEGIN ISOLATION LEVEL " + isolation));
  open_ = true;
  return Status::Ok();
}

Status PgTransaction::Commit() {
  open_ = false;  // after a failed COMMIT the server has ended the transaction
  return conn_.Exec("committing", "COMMIT");
}

}  // namespace latch::ledger::postgres
