#include "collector/tools/latchctl_settings.h"

#include <toml++/toml.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "collector/tools/terminal_text.h"

namespace latchctl {

namespace fs = std::filesystem;

std::string T(std::string_view text) { return latch::tools::TerminalText(text); }

std::string ConfigDir() {
  const char* xdg = std::getenv("XDG_CONFIG_HOME");
  const char* home = std::getenv("HOME");
  return xdg ? std::string(xdg) + "/latch" : std::string(home ? home : ".") + "/.config/latch";
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

// Flags win, then the environment, then the config file.
void Resolve(Settings* s, const std::string& token_file) {
  auto env = [](const char* name) {
    const char* v = std::getenv(name);
    return std::string(v ? v : "");
  };
  if (s->server.empty()) s->server = env("LATCH_SERVER");
  if (s->token.empty() && !token_file.empty()) s->token = Slurp(token_file);
  if (s->token.empty()) s->token = env("LATCH_TOKEN");
  if (s->ca.empty()) s->ca = env("LATCH_CA");
  if (s->ledger_key.empty()) s->ledger_key = env("LATCH_LEDGER_KEY");
  if (s->cert.empty()) s->cert = env("LATCH_CERT");
  if (s->key.empty()) s->key = env("LATCH_KEY");
  if (s->witness_keys.empty()) {
    // LATCH_WITNESS_KEYS: keys separated by commas or spaces.
    std::string list = env("LATCH_WITNESS_KEYS");
    for (char& c : list) c = c == ',' ? ' ' : c;
    std::istringstream words(list);
    for (std::string k; words >> k;) s->witness_keys.push_back(k);
  }
  std::string file = ConfigDir() + "/latchctl.toml";
  if (fs::exists(file)) {
    try {
      toml::table t = toml::parse_file(file);
      if (s->server.empty()) s->server = t["server"].value_or(std::string());
      if (const toml::array* list = t["server"].as_array(); s->server.empty() && list) {
        // Several collectors: tried in order (issue 17).
        for (const toml::node& n : *list) {
          s->server += (s->server.empty() ? "" : ",") + n.value_or(std::string());
        }
      }
      if (s->token.empty()) {
        std::string tf = t["token_file"].value_or(std::string());
        if (!tf.empty()) s->token = Slurp(tf);
      }
      if (s->ca.empty()) s->ca = t["ca"].value_or(std::string());
      if (s->ledger_key.empty()) s->ledger_key = t["ledger_key"].value_or(std::string());
      if (s->cert.empty()) s->cert = t["cert"].value_or(std::string());
      if (s->key.empty()) s->key = t["key"].value_or(std::string());
      if (const toml::array* list = t["witness_keys"].as_array();
          s->witness_keys.empty() && list != nullptr) {
        for (const toml::node& n : *list) s->witness_keys.push_back(n.value_or(std::string()));
      }
      if (s->witness_quorum == 0) {
        s->witness_quorum = static_cast<size_t>(t["witness_quorum"].value_or(int64_t{0}));
      }
    } catch (const toml::parse_error& e) {
      std::fprintf(stderr, "latchctl: %s: %s\n", file.c_str(),
                   std::string(e.description()).c_str());
      std::exit(2);
    }
  }
  if (s->server.empty()) s->server = "https://127.0.0.1:8443";
}

// Where the settings say the API is, and as whom.
latch::client::Endpoint EndpointOf(const Settings& s) {
  latch::client::Endpoint e;
  e.server = s.server;
  e.token = s.token;
  e.cert = s.cert;
  e.key = s.key;
  e.ca = s.ca;
  e.user_agent = "latchctl";
  return e;
}

Reply Call(const Settings& s, std::string_view method, const std::string& target,
           const std::string& body) {
  latch::client::Reply r;
  latch::Status st = latch::client::Call(EndpointOf(s), method, target, body, &r);
  if (!st.ok()) throw Unreachable(st.message());
  return {r.status, r.body};
}

}  // namespace latchctl
