// The packages as an operator gets them, for the deploy tests: built by
// CPack from this build tree, installed with dpkg into a scratch root (an
// empty dpkg database and /etc; maintainer scripts run against it through
// DPKG_ROOT, as --force-script-chrootless runs them). Needs root.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "run_tool.h"

namespace latch::testing {

// Builds the four packages into `dir`/packages and installs them into
// `dir`/root; "" on success, else what failed with its output.
inline std::string BuildAndInstallPackages(const std::string& dir, std::string* root,
                                           std::vector<std::string>* debs = nullptr) {
  namespace fs = std::filesystem;
  std::string out;
  const std::string pkgs = dir + "/packages";
  if (RunTool({"/usr/bin/cpack", "-G", "DEB", "-B", pkgs, "--config",
               std::string(LATCH_BUILD_DIR) + "/CPackConfig.cmake"},
              &out, {}, true) != 0) {
    return "cpack failed:\n" + out;
  }
  std::vector<std::string> built;
  for (const char* name : {"latch-agent", "latch-collector", "latch-tools", "latch-witness"}) {
    std::string deb = pkgs + "/" + name + "_0.1.0_amd64.deb";
    if (!fs::exists(deb)) return deb + " was not built:\n" + out;
    built.push_back(deb);
  }
  *root = dir + "/root";
  fs::create_directories(*root + "/etc");
  fs::create_directories(*root + "/var/lib/dpkg/info");
  fs::create_directories(*root + "/var/lib/dpkg/updates");
  std::ofstream(*root + "/var/lib/dpkg/status");
  std::ofstream(*root + "/var/lib/dpkg/available");
  std::vector<std::string> install = {"/usr/bin/dpkg",
                                      "--root=" + *root,
                                      "--force-script-chrootless",
                                      "--force-depends",  // the root has no libraries
                                      "--log=/dev/null",
                                      "-i"};
  install.insert(install.end(), built.begin(), built.end());
  if (RunTool(install, &out, {}, true) != 0) return "dpkg -i failed:\n" + out;
  if (debs != nullptr) *debs = built;
  return "";
}

}  // namespace latch::testing
