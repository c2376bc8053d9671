// Issue 16: Latch from packages. The .deb packages CPack builds are
// installed with dpkg into a scratch root (maintainer scripts run against it
// through DPKG_ROOT, as dpkg --force-script-chrootless runs them), and what
// an operator relies on is checked there: binaries, units pointing at them,
// the collector's `latch` user (and the witness's, issue 18), directories with the owners and modes
// docs/OPERATIONS.md names, and config examples the binaries accept.
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "run_tool.h"
#include "scratch_install.h"

namespace latch::testing {
namespace {

namespace fs = std::filesystem;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// uid and gid of `name` in a passwd file.
bool FindUser(const std::string& passwd, const std::string& name, uid_t* uid, gid_t* gid,
              std::string* shell) {
  std::istringstream lines(passwd);
  for (std::string line; std::getline(lines, line);) {
    std::vector<std::string> f;
    std::stringstream fields(line);
    for (std::string x; std::getline(fields, x, ':');) f.push_back(x);
    if (f.size() >= 7 && f[0] == name) {
      *uid = static_cast<uid_t>(std::stoul(f[2]));
      *gid = static_cast<gid_t>(std::stoul(f[3]));
      *shell = f[6];
      return true;
    }
  }
  return false;
}

struct Owned {
  bool exists = false;
  mode_t mode = 0;  // permission bits
  uid_t uid = 0;
  gid_t gid = 0;
  bool dir = false;
};

Owned StatOf(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return {};
  return {true, st.st_mode & 07777, st.st_uid, st.st_gid, S_ISDIR(st.st_mode)};
}

class PackageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      if (std::getenv("CI") != nullptr && std::string(std::getenv("CI")) == "true") {
        FAIL() << "installing packages into a scratch root needs root";
      }
      GTEST_SKIP() << "needs root (dpkg --root writes owners)";
    }
    char tmpl[] = "/tmp/latch-package-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty() && !std::getenv("LATCH_KEEP")) fs::remove_all(dir_);
  }
  std::string dir_;
};

TEST_F(PackageTest, PackagesInstallIntoAScratchRootWithTheDocumentedOwnersAndModes) {
  std::string out, root;
  std::vector<std::string> debs;
  const std::string failed = BuildAndInstallPackages(dir_, &root, &debs);
  ASSERT_EQ(failed, "");
  // Dependencies come from dpkg-shlibdeps: the libraries the binaries use.
  ASSERT_EQ(RunTool({"/usr/bin/dpkg-deb", "-f", debs[0], "Depends"}, &out), 0);
  EXPECT_NE(out.find("libbpf1"), std::string::npos) << out;
  EXPECT_NE(out.find("libzmq5"), std::string::npos) << out;

  for (const char* bin :
       {"latch-agent", "latch-collector", "latchctl", "latch-ledger", "latch-witness"}) {
    Owned b = StatOf(root + "/usr/bin/" + bin);
    EXPECT_TRUE(b.exists) << bin;
    EXPECT_EQ(b.mode, 0755u) << bin;
    EXPECT_EQ(b.uid, 0u) << bin;
  }
  const std::string units = root + "/usr/lib/systemd/system/";
  EXPECT_NE(Slurp(units + "latch-agent.service")
                .find("ExecStart=/usr/bin/latch-agent --config /etc/latch/agent.toml"),
            std::string::npos);
  std::string tmpl = Slurp(units + "latch-agent@.service");
  EXPECT_NE(tmpl.find("ExecStart=/usr/bin/latch-agent --config /etc/latch/agent-%i.toml"),
            std::string::npos)
      << tmpl;
  EXPECT_NE(tmpl.find("Description=Latch agent %i:"), std::string::npos) << tmpl;
  std::string collector_unit = Slurp(units + "latch-collector.service");
  EXPECT_NE(collector_unit.find("ExecStart=/usr/bin/latch-collector --config "
                                "/etc/latch/collector.toml"),
            std::string::npos);
  EXPECT_NE(collector_unit.find("User=latch"), std::string::npos);
  EXPECT_NE(collector_unit.find("Documentation=file:///usr/share/doc/latch-collector/README.md"),
            std::string::npos);
  EXPECT_TRUE(fs::exists(root + "/usr/share/doc/latch-collector/README.md"));
  std::string witness_unit = Slurp(units + "latch-witness.service");
  EXPECT_NE(witness_unit.find("ExecStart=/usr/bin/latch-witness --config "
                              "/etc/latch-witness/witness.toml"),
            std::string::npos)
      << witness_unit;
  EXPECT_NE(witness_unit.find("User=latch-witness"), std::string::npos);

  // The service user, made by the collector's package in that root.
  uid_t latch_uid = 0;
  gid_t latch_gid = 0;
  std::string shell;
  ASSERT_TRUE(FindUser(Slurp(root + "/etc/passwd"), "latch", &latch_uid, &latch_gid, &shell))
      << Slurp(root + "/etc/passwd");
  EXPECT_NE(latch_uid, 0u);
  EXPECT_LT(latch_uid, 1000u);  // a system user
  EXPECT_EQ(shell, "/usr/sbin/nologin");
  // The witness's own user: it runs on machines the collector's operators
  // do not hold, and shares nothing with the collector's.
  uid_t witness_uid = 0;
  gid_t witness_gid = 0;
  ASSERT_TRUE(
      FindUser(Slurp(root + "/etc/passwd"), "latch-witness", &witness_uid, &witness_gid, &shell));
  EXPECT_NE(witness_uid, 0u);
  EXPECT_NE(witness_uid, latch_uid);
  EXPECT_LT(witness_uid, 1000u);
  EXPECT_EQ(shell, "/usr/sbin/nologin");
  // The directories, as docs/OPERATIONS.md has them.
  struct Want {
    const char* path;
    mode_t mode;
    uid_t uid;
    gid_t gid;
  };
  for (const Want& w :
       {Want{"/etc/latch", 0750, 0, latch_gid},
        Want{"/var/lib/latch-collector", 0700, latch_uid, latch_gid},
        Want{"/var/lib/latch-agent", 0700, 0, 0}, Want{"/etc/latch-witness", 0750, 0, witness_gid},
        Want{"/var/lib/latch-witness", 0700, witness_uid, witness_gid}}) {
    Owned o = StatOf(root + w.path);
    ASSERT_TRUE(o.exists && o.dir) << w.path;
    EXPECT_EQ(o.mode, w.mode) << w.path;
    EXPECT_EQ(o.uid, w.uid) << w.path;
    EXPECT_EQ(o.gid, w.gid) << w.path;
  }

  // The collector's example configuration, as shipped, is one the installed
  // collector accepts (here with its data somewhere writable).
  const std::string examples = root + "/usr/share/doc/latch-collector/examples/";
  std::string config = Slurp(examples + "collector.toml");
  const std::string data_dir = "data_dir = \"/var/lib/latch-collector\"";
  ASSERT_NE(config.find(data_dir), std::string::npos);
  config.replace(config.find(data_dir), data_dir.size(), "data_dir = \"" + dir_ + "/data\"");
  std::ofstream(dir_ + "/collector.toml") << config;
  EXPECT_EQ(
      RunTool({root + "/usr/bin/latch-collector", "keys", "--config", dir_ + "/collector.toml"},
              &out, {}, true),
      0)
      << out;
  EXPECT_NE(out.find("curve_public_key"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(root + "/usr/share/doc/latch-agent/examples/agent.toml"));
  // So is the witness's: it makes its key from it and prints it.
  std::string witness_config = Slurp(root + "/usr/share/doc/latch-witness/examples/witness.toml");
  const std::string witness_data = "data_dir = \"/var/lib/latch-witness\"";
  ASSERT_NE(witness_config.find(witness_data), std::string::npos) << witness_config;
  witness_config.replace(witness_config.find(witness_data), witness_data.size(),
                         "data_dir = \"" + dir_ + "/witness\"");
  std::ofstream(dir_ + "/witness.toml") << witness_config;
  EXPECT_EQ(
      RunTool({root + "/usr/bin/latch-witness", "key", "--config", dir_ + "/witness.toml"}, &out),
      0)
      << out;
  EXPECT_EQ(out.rfind("witness.example/w1+", 0), 0u) << out;
  EXPECT_TRUE(fs::exists(examples + "policy.toml"));

  // Removing a package leaves the data it made (the ledger must survive).
  ASSERT_EQ(RunTool({"/usr/bin/dpkg", "--root=" + root, "--force-script-chrootless",
                     "--log=/dev/null", "-r", "latch-collector"},
                    &out, {}, true),
            0)
      << out;
  EXPECT_FALSE(fs::exists(root + "/usr/bin/latch-collector"));
  EXPECT_TRUE(fs::exists(root + "/var/lib/latch-collector"));
}

// `cmake --install` puts the same files under any prefix (/usr/local by
// default), with units that name the binaries there.
TEST_F(PackageTest, CmakeInstallWritesUnitsForItsPrefix) {
  std::string out;
  const std::string prefix = dir_ + "/local";
  ASSERT_EQ(
      RunTool({"/usr/bin/cmake", "--install", LATCH_BUILD_DIR, "--prefix", prefix}, &out, {}, true),
      0)
      << out;
  EXPECT_TRUE(fs::exists(prefix + "/bin/latch-agent"));
  EXPECT_TRUE(fs::exists(prefix + "/bin/latchctl"));
  std::string unit = Slurp(prefix + "/lib/systemd/system/latch-collector.service");
  EXPECT_NE(unit.find("ExecStart=" + prefix + "/bin/latch-collector --config"), std::string::npos)
      << unit;
  EXPECT_TRUE(fs::exists(prefix + "/lib/systemd/system/latch-agent@.service"));
  EXPECT_TRUE(fs::exists(prefix + "/share/doc/latch-collector/examples/policy.toml"));
}

}  // namespace
}  // namespace latch::testing
