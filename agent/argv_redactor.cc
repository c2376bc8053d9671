#include "agent/argv_redactor.h"

#include <re2/re2.h>

#include <algorithm>
#include <set>

namespace latch::agent {
namespace {

// Names that say a value is a secret, as a flag (--db-password) or a
// variable (PGPASSWORD).
constexpr char kSecretName[] =
    "[a-z0-9_.-]*(?:password|passwd|passphrase|secret|token|api[-_]?key|access[-_]?key|"
    "private[-_]?key|credentials?)[a-z0-9_.-]*";

// Clients whose attached -pVALUE is a password (not a path, a port or a flag
// group as elsewhere).
const std::set<std::string_view>& PasswordDashP() {
  static const std::set<std::string_view> names = {
      "mysql",         "mysqldump",      "mysqladmin",   "mysqlimport",   "mysqlshow",
      "mysqlcheck",    "mysqlslap",      "mysqlbinlog",  "mariadb",       "mariadb-dump",
      "mariadb-admin", "mariadb-import", "mariadb-show", "mariadb-check", "sshpass"};
  return names;
}

std::string_view Basename(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// Replaces, in `text`, every match of `re`: its capturing groups, or the
// whole match when it has none. Returns whether anything was replaced.
bool ReplaceMatches(const re2::RE2& re, std::string* text) {
  int groups = re.NumberOfCapturingGroups();
  std::vector<re2::StringPiece> found(static_cast<size_t>(groups) + 1);
  std::vector<std::pair<size_t, size_t>> spans;  // [begin, end) to replace
  re2::StringPiece whole(*text);
  size_t pos = 0;
  while (pos <= text->size() && re.Match(whole, pos, text->size(), re2::RE2::UNANCHORED,
                                         found.data(), static_cast<int>(found.size()))) {
    size_t match_begin = static_cast<size_t>(found[0].data() - text->data());
    size_t match_end = match_begin + found[0].size();
    for (int g = groups == 0 ? 0 : 1; g <= groups; ++g) {
      const re2::StringPiece& piece = found[static_cast<size_t>(g)];
      if (piece.data() == nullptr || piece.empty()) continue;
      size_t begin = static_cast<size_t>(piece.data() - text->data());
      if (!spans.empty() && begin < spans.back().second) continue;  // nested group
      spans.emplace_back(begin, begin + piece.size());
    }
    pos = match_end > match_begin ? match_end : match_begin + 1;
  }
  if (spans.empty()) return false;
  std::string out;
  size_t at = 0;
  for (auto [begin, end] : spans) {
    out.append(*text, at, begin - at);
    out.append(ArgvRedactor::kMark);
    at = end;
  }
  out.append(*text, at, std::string::npos);
  *text = std::move(out);
  return true;
}

// "user:password" -> "user:[REDACTED]"; false when there is no password.
bool RedactUserPassword(std::string* value, size_t from = 0) {
  size_t colon = value->find(':', from);
  if (colon == std::string::npos || colon + 1 == value->size()) return false;
  if (value->compare(colon + 1, std::string::npos, ArgvRedactor::kMark) == 0) return false;
  value->replace(colon + 1, std::string::npos, ArgvRedactor::kMark);
  return true;
}

}  // namespace

ArgvRedactor::ArgvRedactor() = default;
ArgvRedactor::~ArgvRedactor() = default;

Status ArgvRedactor::Create(const RedactionRules& rules, std::unique_ptr<ArgvRedactor>* out) {
  std::unique_ptr<ArgvRedactor> r(new ArgvRedactor());
  r->defaults_ = rules.defaults;
  re2::RE2::Options quiet;
  quiet.set_log_errors(false);
  auto compile = [&](const std::string& pattern, std::unique_ptr<re2::RE2>* re) {
    *re = std::make_unique<re2::RE2>(pattern, quiet);
    return (*re)->ok();
  };
  bool ok = compile(std::string("(?i)^(?:-{0,2}") + kSecretName + "|--?pass)=(.+)$",
                    &r->secret_assignment_) &&
            compile(std::string("(?i)^(?:--?") + kSecretName + "|--?pass)$", &r->secret_flag_) &&
            compile("(?i)[a-z][a-z0-9+.-]*://[^/@:\\s]*:([^@/\\s]+)@", &r->url_userinfo_) &&
            compile(
                "(?i)^\\s*(?:proxy-)?authorization\\s*:\\s*"
                "(?:(?:basic|bearer|token|digest|negotiate)\\s+)?(\\S.*)$",
                &r->auth_header_);
  if (!ok) return Status::FailedPrecondition("a built-in redaction rule does not compile");
  for (const std::string& p : rules.patterns) {
    std::unique_ptr<re2::RE2> re;
    if (!compile(p, &re)) {
      return Status::InvalidArgument("redaction pattern '" + p +
                                     "' is not valid RE2: " + re->error());
    }
    r->patterns_.push_back(std::move(re));
  }
  *out = std::move(r);
  return Status::Ok();
}

bool ArgvRedactor::Redact(std::string_view path, std::vector<std::string>* args) const {
  bool changed = false;
  if (defaults_) {
    std::string_view program = args->empty() ? Basename(path) : Basename((*args)[0]);
    changed |= RedactDefaults(program, args);
    if (program != Basename(path)) changed |= RedactDefaults(Basename(path), args);
  }
  for (const auto& re : patterns_) {
    for (std::string& a : *args) changed |= ReplaceMatches(*re, &a);
  }
  return changed;
}

bool ArgvRedactor::RedactDefaults(std::string_view program, std::vector<std::string>* args) const {
  bool changed = false;
  bool dash_p = PasswordDashP().count(program) != 0;
  bool curl = program == "curl";
  for (size_t i = 1; i < args->size(); ++i) {
    std::string& a = (*args)[i];
    std::string* next = i + 1 < args->size() ? &(*args)[i + 1] : nullptr;
    // First: -pSECRET is a password, whatever the letters after -p spell.
    if (dash_p && a.size() > 2 && a.compare(0, 2, "-p") == 0 &&
        a.compare(2, std::string::npos, kMark) != 0) {
      a = "-p" + std::string(kMark);
      changed = true;
      continue;
    }
    if (ReplaceMatches(*secret_assignment_, &a)) {
      changed = true;
      continue;
    }
    if (re2::RE2::FullMatch(a, *secret_flag_) && next != nullptr && !next->empty() &&
        (*next)[0] != '-' && *next != kMark) {
      *next = std::string(kMark);
      changed = true;
      ++i;
      continue;
    }
    if (program == "sshpass" && a == "-p" && next != nullptr && *next != kMark) {
      *next = std::string(kMark);
      changed = true;
      ++i;
      continue;
    }
    if ((a == "-u" || a == "--user" || a == "--proxy-user" || (curl && a == "-U")) &&
        next != nullptr) {
      changed |= RedactUserPassword(next);
      ++i;
      continue;
    }
    if (a.compare(0, 7, "--user=") == 0 || a.compare(0, 13, "--proxy-user=") == 0) {
      changed |= RedactUserPassword(&a, a.find('=') + 1);
      continue;
    }
    if (curl && a.size() > 2 && (a.compare(0, 2, "-u") == 0 || a.compare(0, 2, "-U") == 0)) {
      changed |= RedactUserPassword(&a, 2);
      continue;
    }
    changed |= ReplaceMatches(*url_userinfo_, &a);
    changed |= ReplaceMatches(*auth_header_, &a);
  }
  return changed;
}

}  // namespace latch::agent
