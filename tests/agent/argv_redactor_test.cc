// Issue 13.8: secrets never reach the ledger through a command line. One test
// per default rule, the configured patterns, and what must be left alone.
#include "agent/argv_redactor.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "schemas/activity_record.h"

namespace latch::agent {
namespace {

using Args = std::vector<std::string>;

Args Redacted(Args args, const RedactionRules& rules = {}, bool* changed = nullptr) {
  std::unique_ptr<ArgvRedactor> r;
  Status s = ArgvRedactor::Create(rules, &r);
  EXPECT_TRUE(s.ok()) << s.ToString();
  bool c = r->Redact(args.empty() ? "" : "/usr/bin/" + args[0], &args);
  if (changed != nullptr) *changed = c;
  return args;
}

TEST(ArgvRedactor, MysqlAttachedPassword) {
  EXPECT_EQ(Redacted({"mysql", "-uroot", "-pSECRET", "shop"}),
            (Args{"mysql", "-uroot", "-p[REDACTED]", "shop"}));
  EXPECT_EQ(Redacted({"mariadb-dump", "-phunter2"}), (Args{"mariadb-dump", "-p[REDACTED]"}));
  // -p alone prompts: the next argument is the database, not a secret.
  EXPECT_EQ(Redacted({"mysql", "-p", "shop"}), (Args{"mysql", "-p", "shop"}));
  // Other programs' -p is something else.
  EXPECT_EQ(Redacted({"mkdir", "-pv", "/tmp/x"}), (Args{"mkdir", "-pv", "/tmp/x"}));
  EXPECT_EQ(Redacted({"sshpass", "-p", "pw", "ssh", "h"}),
            (Args{"sshpass", "-p", "[REDACTED]", "ssh", "h"}));
}

TEST(ArgvRedactor, PasswordFlagsAttachedAndSeparate) {
  EXPECT_EQ(Redacted({"tool", "--password=SECRET"}), (Args{"tool", "--password=[REDACTED]"}));
  EXPECT_EQ(Redacted({"tool", "--db-password=a=b"}), (Args{"tool", "--db-password=[REDACTED]"}));
  EXPECT_EQ(Redacted({"tool", "--api-key=k", "--token=t", "--client_secret=s", "--pass=p"}),
            (Args{"tool", "--api-key=[REDACTED]", "--token=[REDACTED]",
                  "--client_secret=[REDACTED]", "--pass=[REDACTED]"}));
  EXPECT_EQ(Redacted({"tool", "--password", "SECRET", "host"}),
            (Args{"tool", "--password", "[REDACTED]", "host"}));
  EXPECT_EQ(Redacted({"vault", "login", "-token", "s.abc"}),
            (Args{"vault", "login", "-token", "[REDACTED]"}));
  // A flag without a value (psql's --password prompts) leaves the next flag.
  EXPECT_EQ(Redacted({"psql", "--password", "-h", "db"}), (Args{"psql", "--password", "-h", "db"}));
  // Case does not hide it.
  EXPECT_EQ(Redacted({"tool", "--PassWord=x"}), (Args{"tool", "--PassWord=[REDACTED]"}));
}

TEST(ArgvRedactor, SecretVariablesAsArguments) {
  EXPECT_EQ(Redacted({"env", "PGPASSWORD=SECRET", "psql"}),
            (Args{"env", "PGPASSWORD=[REDACTED]", "psql"}));
  EXPECT_EQ(Redacted({"env", "GITHUB_TOKEN=ghp_x", "HOME=/root"}),
            (Args{"env", "GITHUB_TOKEN=[REDACTED]", "HOME=/root"}));
}

TEST(ArgvRedactor, UrlUserinfo) {
  EXPECT_EQ(Redacted({"psql", "postgresql://app:SECRET@db:5432/shop"}),
            (Args{"psql", "postgresql://app:[REDACTED]@db:5432/shop"}));
  EXPECT_EQ(Redacted({"git", "clone", "https://u:tok@git.example/r.git"}),
            (Args{"git", "clone", "https://u:[REDACTED]@git.example/r.git"}));
  EXPECT_EQ(Redacted({"tool", "--src=redis://:pw@h:6379,amqp://a:b@q"}),
            (Args{"tool", "--src=redis://:[REDACTED]@h:6379,amqp://a:[REDACTED]@q"}));
  // A user without a password, and a port, are not secrets.
  EXPECT_EQ(Redacted({"ssh", "ssh://tess@h:22"}), (Args{"ssh", "ssh://tess@h:22"}));
  EXPECT_EQ(Redacted({"curl", "https://h:8443/x"}), (Args{"curl", "https://h:8443/x"}));
}

TEST(ArgvRedactor, UserColonPassword) {
  EXPECT_EQ(Redacted({"curl", "-u", "user:pw", "https://h"}),
            (Args{"curl", "-u", "user:[REDACTED]", "https://h"}));
  EXPECT_EQ(Redacted({"curl", "-uuser:pw", "https://h"}),
            (Args{"curl", "-uuser:[REDACTED]", "https://h"}));
  EXPECT_EQ(Redacted({"curl", "--user=user:p:w"}), (Args{"curl", "--user=user:[REDACTED]"}));
  EXPECT_EQ(Redacted({"wget", "--proxy-user", "me:pw"}),
            (Args{"wget", "--proxy-user", "me:[REDACTED]"}));
  // No password part: nothing to take out.
  EXPECT_EQ(Redacted({"sudo", "-u", "postgres", "psql"}), (Args{"sudo", "-u", "postgres", "psql"}));
}

TEST(ArgvRedactor, AuthorizationHeaders) {
  EXPECT_EQ(Redacted({"curl", "-H", "Authorization: Bearer eyJabc", "https://h"}),
            (Args{"curl", "-H", "Authorization: Bearer [REDACTED]", "https://h"}));
  EXPECT_EQ(Redacted({"curl", "-H", "proxy-authorization:Basic dXNlcjpwdw=="}),
            (Args{"curl", "-H", "proxy-authorization:Basic [REDACTED]"}));
}

TEST(ArgvRedactor, NothingToRedactIsUnchangedAndSaysSo) {
  bool changed = true;
  Args plain = {"psql", "-h", "127.0.0.1", "-c", "select 1"};
  EXPECT_EQ(Redacted(plain, {}, &changed), plain);
  EXPECT_FALSE(changed);
  Redacted({"mysql", "-pX"}, {}, &changed);
  EXPECT_TRUE(changed);
}

TEST(ArgvRedactor, ConfiguredPatternsAndDefaultsOff) {
  RedactionRules rules;
  rules.patterns = {"--vault-id=(\\S+)", "sk_live_[A-Za-z0-9]+"};
  EXPECT_EQ(Redacted({"tool", "--vault-id=prod@x", "key sk_live_abc123 end"}, rules),
            (Args{"tool", "--vault-id=[REDACTED]", "key [REDACTED] end"}));
  rules.defaults = false;
  rules.patterns.clear();
  EXPECT_EQ(Redacted({"mysql", "-pX"}, rules), (Args{"mysql", "-pX"}));
}

TEST(ArgvRedactor, BadPatternIsANamedError) {
  std::unique_ptr<ArgvRedactor> r;
  RedactionRules rules;
  rules.patterns = {"(unclosed"};
  Status s = ArgvRedactor::Create(rules, &r);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("(unclosed"), std::string::npos) << s.ToString();
  // Backreferences would need backtracking: RE2 refuses them.
  rules.patterns = {"(a)\\1"};
  EXPECT_FALSE(ArgvRedactor::Create(rules, &r).ok());
}

// A hostile command line costs linear time: 60,000 characters against a
// configured pattern that would backtrack catastrophically elsewhere.
TEST(ArgvRedactor, HostileInputIsLinear) {
  RedactionRules rules;
  rules.patterns = {"(a+)+b"};
  Args args = {"tool", std::string(60000, 'a')};
  Args out = Redacted(args, rules);
  EXPECT_EQ(out, args);
}

}  // namespace
}  // namespace latch::agent
