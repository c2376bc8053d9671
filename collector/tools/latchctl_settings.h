// latchctl's settings (flags, then the environment, then
// ~/.config/latch/latchctl.toml) and its calls to the collector's API, shared
// by its commands.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "collector/client/api_client.h"

namespace latchctl {

struct Settings {
  std::string server, token, ca, ledger_key;
  std::string cert, key;  // a client certificate instead of a token
  // Witnesses an auditor pins (issue 18): verify demands a checkpoint that
  // `witness_quorum` of them (0: all) cosigned.
  std::vector<std::string> witness_keys;
  size_t witness_quorum = 0;
  bool json = false;
};

struct Reply {
  int status = 0;
  std::string body;
};

// The server cannot be reached (exit code 3).
class Unreachable : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Text from outside, as a terminal may safely show it.
std::string T(std::string_view text);

// Where latchctl keeps its files: $XDG_CONFIG_HOME/latch or ~/.config/latch.
std::string ConfigDir();
// A file's text without its trailing newlines ("" if it cannot be read).
std::string Slurp(const std::string& path);

// Fills what flags left empty: the environment, then the config file (a
// config file that does not parse exits 2).
void Resolve(Settings* s, const std::string& token_file);
// Where the settings say the API is, and as whom.
latch::client::Endpoint EndpointOf(const Settings& s);
// One call; Unreachable if no answer came.
Reply Call(const Settings& s, std::string_view method, const std::string& target,
           const std::string& body = "");

}  // namespace latchctl
