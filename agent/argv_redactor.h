// ArgvRedactor: takes secrets out of a command line before it is recorded.
// Activity records keep what a grant holder ran, and the ledger they go to can
// never forget anything (promise 12: secrets are redacted before they enter
// it), so `mysql -pSECRET`, `--password=...`, `curl -u user:pw` and URLs with
// credentials are rewritten on the host, before the record is spooled.
//
// Default rules (each replaces only the secret with "[REDACTED]"):
//   - a flag or assignment whose name says secret, with its value attached:
//     --password=x, --db-token=x, -api_key=x, PGPASSWORD=x, MY_SECRET=x;
//   - such a flag followed by its value as the next argument: --password x;
//   - the MySQL/MariaDB clients' and sshpass's attached -pSECRET;
//   - user:password after -u/--user/--proxy-user (curl, wget and the like),
//     or attached to curl's -u;
//   - the password of a URL's userinfo, in any argument: scheme://u:pw@host;
//   - the credentials of an Authorization or Proxy-Authorization header.
// Configured patterns (RE2 syntax, linear time whatever the input) apply to
// each argument: every match's capturing groups are replaced, or the whole
// match when the pattern has none.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lib/status/status.h"
#include "schemas/activity_record.h"

namespace re2 {
class RE2;
}

namespace latch::agent {

struct RedactionRules {
  bool defaults = true;               // the rules above
  std::vector<std::string> patterns;  // more, RE2 syntax
};

class ArgvRedactor : public record::ArgsRedactor {
 public:
  // InvalidArgument naming the pattern that does not compile.
  static Status Create(const RedactionRules& rules, std::unique_ptr<ArgvRedactor>* out);
  ~ArgvRedactor();
  ArgvRedactor(const ArgvRedactor&) = delete;
  ArgvRedactor& operator=(const ArgvRedactor&) = delete;

  // Rewrites the secrets in `args` (argv, program first) in place; `path` is
  // the executed file, which names the program when argv[0] does not.
  // Returns whether anything was replaced.
  bool Redact(std::string_view path, std::vector<std::string>* args) const override;

  static constexpr std::string_view kMark = "[REDACTED]";

 private:
  ArgvRedactor();
  bool RedactDefaults(std::string_view program, std::vector<std::string>* args) const;

  bool defaults_ = true;
  std::unique_ptr<re2::RE2> secret_assignment_;  // name=value, name says secret
  std::unique_ptr<re2::RE2> secret_flag_;        // --name, value in the next argument
  std::unique_ptr<re2::RE2> url_userinfo_;
  std::unique_ptr<re2::RE2> auth_header_;
  std::vector<std::unique_ptr<re2::RE2>> patterns_;
};

}  // namespace latch::agent
