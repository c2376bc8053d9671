// latchctl: requesters, approvers and auditors at the collector's HTTPS API.
//
//   latchctl request RESOURCE --for 30m --reason "..."   ask for access
//   latchctl requests [--pending] [--all]                your requests and your inbox
//   latchctl approve ID [--comment ...]   latchctl deny ID [--comment ...]   latchctl cancel ID
//   latchctl revoke GRANT [--reason ...]   latchctl grants
//   latchctl verify                       the ledger's checkpoint: signed by the ledger key and
//                                         consistent with the last one this client saw
//   latchctl events [--host H] [--user U] [--resource R] [--grant G] [--verdict V] [--kind K]
//                   [--since 1h] [--until 10m] [--limit N] [--follow]
//                                         the audit trail; every result's inclusion proof is
//                                         checked against the signed checkpoint it names
//
// Settings come from flags, then the environment (LATCH_SERVER, LATCH_TOKEN,
// LATCH_CA, LATCH_LEDGER_KEY, LATCH_CERT, LATCH_KEY), then
// ~/.config/latch/latchctl.toml (server, token_file, ca, ledger_key, cert, key). Output is a table,
// or JSON with --json. Exit codes: 0 done, 1 refused or not verified, 2 usage, 3 cannot reach the
// server.
#include <arpa/inet.h>
#include <toml++/toml.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string_view>
#include <thread>
#include <utility>

#include "collector/client/api_client.h"
#include "collector/client/event_answer.h"
#include "collector/tools/terminal_text.h"
#include "collector/workflow/duration.h"
#include "lib/storage/append_file.h"
#include "lib/tlog/base64.h"
#include "lib/tlog/checkpoint.h"
#include "lib/tlog/proof.h"

namespace {

namespace fs = std::filesystem;

struct Settings {
  std::string server, token, ca, ledger_key;
  std::string cert, key;  // a client certificate instead of a token
  bool json = false;
};

struct Reply {
  int status = 0;
  std::string body;
};

// Text from outside, as a terminal may safely show it.
std::string T(std::string_view text) { return latch::tools::TerminalText(text); }

class Unreachable : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

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
  std::string file = ConfigDir() + "/latchctl.toml";
  if (fs::exists(file)) {
    try {
      toml::table t = toml::parse_file(file);
      if (s->server.empty()) s->server = t["server"].value_or(std::string());
      if (s->token.empty()) {
        std::string tf = t["token_file"].value_or(std::string());
        if (!tf.empty()) s->token = Slurp(tf);
      }
      if (s->ca.empty()) s->ca = t["ca"].value_or(std::string());
      if (s->ledger_key.empty()) s->ledger_key = t["ledger_key"].value_or(std::string());
      if (s->cert.empty()) s->cert = t["cert"].value_or(std::string());
      if (s->key.empty()) s->key = t["key"].value_or(std::string());
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
           const std::string& body = "") {
  latch::client::Reply r;
  latch::Status st = latch::client::Call(EndpointOf(s), method, target, body, &r);
  if (!st.ok()) throw Unreachable(st.message());
  return {r.status, r.body};
}

// Prints the reply (JSON or via `table`) and returns the exit code.
int Show(const Settings& s, const Reply& r,
         const std::function<void(const nlohmann::json&)>& table) {
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (r.status >= 400) {
    std::string why = j.is_object() && j.contains("error") ? j["error"].get<std::string>() : r.body;
    std::fprintf(stderr, "latchctl: %d: %s\n", r.status, T(why).c_str());
    return 1;
  }
  if (s.json || !j.is_object()) {
    std::printf("%s\n", j.is_discarded() ? r.body.c_str() : j.dump(2).c_str());
  } else {
    table(j);
  }
  return 0;
}

void RequestRow(const nlohmann::json& q) {
  std::printf(
      "%-6s %-10s %-12s %-16s %-8s %s%s\n", std::to_string(q["id"].get<uint64_t>()).c_str(),
      T(q["state"].get<std::string>()).c_str(), T(q["requester"].get<std::string>()).c_str(),
      T(q["resource"].get<std::string>()).c_str(), T(q["duration"].get<std::string>()).c_str(),
      T(q["reason"].get<std::string>()).c_str(),
      q["break_glass"].get<bool>() ? "  [BREAK-GLASS]" : "");
}

int Verify(const Settings& s) {
  if (s.ledger_key.empty()) {
    std::fprintf(stderr,
                 "latchctl: verify needs the ledger key (--ledger-key, LATCH_LEDGER_KEY)\n");
    return 2;
  }
  latch::tlog::NoteVerifier key;
  if (!latch::tlog::NoteVerifier::Parse(s.ledger_key, &key).ok()) {
    std::fprintf(stderr, "latchctl: the ledger key is not a verifier key\n");
    return 2;
  }
  Reply r = Call(s, "GET", "/checkpoint");
  latch::tlog::Checkpoint now;
  latch::Status st = latch::tlog::OpenCheckpoint(r.body, key, &now);
  if (r.status != 200 || !st.ok()) {
    std::fprintf(stderr, "latchctl: NOT VERIFIED: the checkpoint: %s\n", st.ToString().c_str());
    return 1;
  }
  std::string saved_path = ConfigDir() + "/checkpoint";
  std::string saved_note = Slurp(saved_path);
  if (!saved_note.empty()) saved_note += "\n";
  latch::tlog::Checkpoint before;
  if (!saved_note.empty() && latch::tlog::OpenCheckpoint(saved_note, key, &before).ok() &&
      before.size > 0) {
    if (now.size < before.size) {
      std::fprintf(stderr, "latchctl: NOT VERIFIED: the ledger shrank from %llu to %llu entries\n",
                   static_cast<unsigned long long>(before.size),
                   static_cast<unsigned long long>(now.size));
      return 1;
    }
    std::vector<latch::tlog::Hash> proof;
    if (now.size > before.size) {
      Reply p = Call(s, "GET",
                     "/v1/proof/consistency?from=" + std::to_string(before.size) +
                         "&to=" + std::to_string(now.size));
      auto j = nlohmann::json::parse(p.body, nullptr, false);
      if (p.status != 200 || !j.is_object()) {
        std::fprintf(stderr, "latchctl: cannot get a consistency proof (%d)\n", p.status);
        return 1;
      }
      for (auto& h : j["proof"]) {
        auto bytes = latch::tlog::Base64Decode(h.get<std::string>());
        if (!bytes || bytes->size() != 32) return 1;
        latch::tlog::Hash x;
        std::copy(bytes->begin(), bytes->end(), x.begin());
        proof.push_back(x);
      }
    }
    st = latch::tlog::VerifyConsistency(before.size, now.size, proof, before.root, now.root);
    if (!st.ok()) {
      std::fprintf(stderr,
                   "latchctl: NOT VERIFIED: not consistent with the checkpoint seen "
                   "before (size %llu): %s\n",
                   static_cast<unsigned long long>(before.size), st.ToString().c_str());
      return 1;
    }
  }
  fs::create_directories(ConfigDir());
  (void)latch::storage::WriteFileAtomically(ConfigDir(), "checkpoint", r.body, 0644);
  std::printf(
      "verified: %s, %llu entries%s\n", now.origin.c_str(),
      static_cast<unsigned long long>(now.size),
      before.size > 0
          ? (", consistent with the " + std::to_string(before.size) + " seen before").c_str()
          : " (first checkpoint seen; saved)");
  return 0;
}

struct EventsArgs {
  std::string host, user, resource, verdict, kind, since, until;
  uint64_t grant = 0;
  int limit = 0;  // 0: every page
  bool follow = false;
  bool no_verify = false;
};

std::string UrlEscape(const std::string& s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

// "1h" (that long ago) or Unix nanoseconds, as Unix ns.
bool ParseTime(const std::string& text, int64_t now_ns, int64_t* out) {
  if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos) {
    *out = std::stoll(text);
    return true;
  }
  int64_t ago = 0;
  if (!latch::workflow::ParseDuration(text, &ago).ok()) return false;
  *out = now_ns - ago;
  return true;
}

std::string TimeText(int64_t ns) {
  time_t secs = static_cast<time_t>(ns / 1000000000);
  char when[32];
  std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", std::gmtime(&secs));
  char ms[8];
  std::snprintf(ms, sizeof(ms), ".%03lld", static_cast<long long>((ns / 1000000) % 1000));
  return std::string(when) + ms;
}

// "127.0.0.1:5432" or "[fd00::5]:5432" from an activity record's 16 address
// bytes (hex; IPv4 as IPv4-mapped IPv6) and port.
std::string AddressText(const std::string& hex, int port) {
  unsigned char a[16] = {};
  for (size_t i = 0; i < 16 && 2 * i + 1 < hex.size(); ++i) {
    a[i] = static_cast<unsigned char>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  }
  char text[INET6_ADDRSTRLEN] = {};
  static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(a, kMapped, 12) == 0) {
    ::inet_ntop(AF_INET, a + 12, text, sizeof(text));
    return std::string(text) + ":" + std::to_string(port);
  }
  ::inet_ntop(AF_INET6, a, text, sizeof(text));
  return "[" + std::string(text) + "]:" + std::to_string(port);
}

std::string ResultText(int result) {
  if (result == 0) return "ok";
  if (result == -EINPROGRESS) return "started (non-blocking)";
  return "failed (" + std::string(std::strerror(-result)) + ")";
}

// What an activity record says, in a few words: the command line run, the
// destination connected to, the file opened, the credentials changed.
std::string ActivityWhat(const std::string& kind, const nlohmann::json& d) {
  if (kind == "exec") {
    std::string line = "exec";
    for (const auto& a : d.value("args", nlohmann::json::array())) {
      line += " " + a.get<std::string>();
    }
    if (line.size() > 120) line = line.substr(0, 117) + "...";
    if (d.value("args_truncated", false)) line += " (arguments cut)";
    return line;
  }
  if (kind == "exit") return "exit status " + std::to_string(d.value("status", 0));
  std::string via = d.value("via", "") == "io_uring" ? " (io_uring)" : "";
  if (kind == "connect") {
    return "connect " + AddressText(d.value("destination", ""), d.value("port", 0)) + " " +
           ResultText(d.value("result", 0)) + via;
  }
  if (kind == "open") {
    return "open " + d.value("path", "") + " " + ResultText(d.value("result", 0)) + via;
  }
  if (kind == "io_uring_setup") {
    return "io_uring set up, fd " + std::to_string(d.value("fd", -1)) + ", " +
           std::to_string(d.value("sq_entries", 0u)) + " entries";
  }
  if (kind == "io_uring_ops") {
    return "io_uring submitted: " + d.value("submitted", nlohmann::json()).dump();
  }
  if (kind == "credentials" && d.contains("old") && d.contains("new")) {
    // The call by name (x86-64 numbers, the one architecture bpf/ is built
    // for), then only what it changed.
    static const std::map<int, const char*> kCalls = {
        {105, "setuid"},    {106, "setgid"},    {113, "setreuid"}, {114, "setregid"},
        {117, "setresuid"}, {119, "setresgid"}, {126, "capset"}};
    int nr = d.value("syscall", -1);
    auto name = kCalls.find(nr);
    std::string line = name != kCalls.end() ? name->second : "syscall " + std::to_string(nr);
    for (const char* field : {"uid", "euid", "gid", "egid", "cap_effective"}) {
      uint64_t before = d["old"].value(field, uint64_t{0}),
               after = d["new"].value(field, uint64_t{0});
      if (before == after) continue;
      char text[64];
      if (std::string(field) == "cap_effective") {
        std::snprintf(text, sizeof(text), " caps %#llx->%#llx",
                      static_cast<unsigned long long>(before),
                      static_cast<unsigned long long>(after));
      } else {
        std::snprintf(text, sizeof(text), " %s %llu->%llu", field,
                      static_cast<unsigned long long>(before),
                      static_cast<unsigned long long>(after));
      }
      line += text;
    }
    return line + " " + ResultText(d.value("result", 0));
  }
  if (kind == "throttle")
    return "throttle, held back: " + d.value("suppressed", nlohmann::json()).dump();
  return kind;
}

// One line per event, from the proven entry bytes (the server's attribution
// of identity and resource name is shown as such).
void EventRow(const latch::client::VerifiedEvent& e) {
  const auto& v = e.view;
  std::string what = v.kind;
  if (v.activity && v.detail.is_object()) {
    what = ActivityWhat(v.kind, v.detail.contains("record") ? v.detail["record"] : v.detail);
  }
  if (v.kind == "decision") {
    const auto& r = v.detail["record"];
    what = v.verdict + " " + r.value("comm", "") + " uid " + std::to_string(v.uid) + " -> " +
           r.value("daddr", "") + ":" + std::to_string(r.value("dport", 0));
  }
  std::string grants;
  for (uint64_t g : v.grant_ids) grants += (grants.empty() ? "" : ",") + std::to_string(g);
  // Every field from the record is shown through T(): a process name or
  // path may carry terminal controls.
  std::printf("%-8s %-23s %-12s %-12s %-16s %-7s %s\n", std::to_string(e.index).c_str(),
              TimeText(v.time_ns).c_str(), v.host.empty() ? "-" : T(v.host).c_str(),
              e.identity.empty() ? "-" : T(e.identity).c_str(),
              e.resource.empty() ? "-" : T(e.resource).c_str(),
              grants.empty() ? "-" : grants.c_str(), T(what).c_str());
}

// The live tail: server-sent events from the ledger index `from` on, each
// message a page with proofs, verified and printed as it arrives. Returns
// when the server closes the stream (or on an error).
int Follow(const Settings& s, const std::string& params, uint64_t from, bool verify,
           const latch::tlog::NoteVerifier& key) {
  std::unique_ptr<latch::client::ApiConnection> c;
  latch::Status st = latch::client::ApiConnection::Open(EndpointOf(s), &c);
  int status = 0;
  std::string pending;
  if (st.ok())
    st = c->OpenStream("/v1/events/stream?" + params + "from_index=" + std::to_string(from),
                       &status, &pending);
  if (!st.ok()) {
    std::fprintf(stderr, "latchctl: the live tail ended: %s\n", st.message().c_str());
    return 3;
  }
  if (status != 200) {
    std::fprintf(stderr, "latchctl: the live tail was refused (%d)\n", status);
    return 1;
  }
  try {
    while (true) {
      size_t end;
      while ((end = pending.find("\n\n")) != std::string::npos) {
        std::string message = pending.substr(0, end);
        pending.erase(0, end + 2);
        size_t data = message.find("data: ");
        if (data == std::string::npos) continue;  // a comment or keepalive
        auto page = nlohmann::json::parse(message.substr(data + 6), nullptr, false);
        std::vector<latch::client::VerifiedEvent> events;
        if (message.rfind("event: error", 0) == 0 || page.is_discarded()) {
          std::fprintf(stderr, "latchctl: the live tail ended: %s\n", T(message).c_str());
          return 1;
        }
        latch::Status checked =
            verify ? latch::client::VerifyEventAnswer(page, key, &events) : latch::Status::Ok();
        if (!checked.ok()) {
          std::fprintf(stderr, "latchctl: NOT VERIFIED: %s\n", checked.ToString().c_str());
          return 1;
        }
        if (s.json) {
          for (auto& e : page["events"]) std::printf("%s\n", e.dump().c_str());
        } else {
          for (const auto& e : events) EventRow(e);
        }
        std::fflush(stdout);
      }
      st = c->ReadSome(&pending);
      if (!st.ok()) {
        std::fprintf(stderr, "latchctl: the live tail ended: %s\n", st.message().c_str());
        return 3;
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "latchctl: the live tail ended: %s\n", e.what());
    return 3;
  }
}

int Events(const Settings& s, const EventsArgs& a) {
  latch::tlog::NoteVerifier key;
  if (!a.no_verify) {
    if (s.ledger_key.empty()) {
      std::fprintf(stderr,
                   "latchctl: events are verified against the ledger key (--ledger-key, "
                   "LATCH_LEDGER_KEY); --no-verify shows them unchecked\n");
      return 2;
    }
    if (!latch::tlog::NoteVerifier::Parse(s.ledger_key, &key).ok()) {
      std::fprintf(stderr, "latchctl: the ledger key is not a verifier key\n");
      return 2;
    }
  }
  int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  std::string base = "/v1/events?";
  auto add = [&](const char* name, const std::string& v) {
    if (!v.empty()) base += std::string(name) + "=" + UrlEscape(v) + "&";
  };
  add("host", a.host);
  add("identity", a.user);
  add("resource", a.resource);
  add("verdict", a.verdict);
  add("kind", a.kind);
  if (a.grant != 0) add("grant", std::to_string(a.grant));
  for (auto [flag, text] : {std::pair{"since_ns", a.since}, std::pair{"until_ns", a.until}}) {
    if (text.empty()) continue;
    int64_t ns = 0;
    if (!ParseTime(text, now, &ns)) {
      std::fprintf(stderr, "latchctl: '%s' is neither a duration (1h, 30m) nor Unix ns\n",
                   text.c_str());
      return 2;
    }
    add(flag, std::to_string(ns));
  }
  int page_limit = a.limit > 0 && a.limit < latch::client::kMaxEventLimit ? a.limit : 500;
  std::string cursor;
  int shown = 0;
  uint64_t checkpoint_size = 0;
  nlohmann::json all = nlohmann::json::array();
  if (!s.json) {
    std::printf("%-8s %-23s %-12s %-12s %-16s %-7s %s\n", "INDEX", "TIME (UTC)", "HOST", "WHO",
                "RESOURCE", "GRANT", "WHAT");
  }
  while (true) {
    std::string target = base + "limit=" + std::to_string(page_limit);
    if (!cursor.empty()) target += "&cursor=" + UrlEscape(cursor);
    Reply r = Call(s, "GET", target);
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (r.status != 200 || !j.is_object()) {
      std::string why =
          j.is_object() && j.contains("error") ? j["error"].get<std::string>() : r.body;
      std::fprintf(stderr, "latchctl: %d: %s\n", r.status, why.c_str());
      return 1;
    }
    std::vector<latch::client::VerifiedEvent> events;
    if (!a.no_verify) {
      latch::Status st = latch::client::VerifyEventAnswer(j, key, &events, &checkpoint_size);
      if (!st.ok()) {
        std::fprintf(stderr, "latchctl: NOT VERIFIED: %s\n", st.ToString().c_str());
        return 1;
      }
    } else {
      for (const auto& e : j["events"]) {
        latch::client::VerifiedEvent v;
        v.index = e["index"];
        auto bytes = latch::tlog::Base64Decode(e["entry"].get<std::string>());
        if (!bytes || !latch::index::ViewRecord(
                           {reinterpret_cast<const char*>(bytes->data()), bytes->size()}, &v.view)
                           .ok()) {
          continue;
        }
        v.identity = e.value("identity", "");
        v.resource = e.value("resource", "");
        events.push_back(std::move(v));
      }
    }
    for (size_t i = 0; i < events.size(); ++i) {
      if (a.limit > 0 && shown >= a.limit) break;
      ++shown;
      if (s.json) {
        nlohmann::json e = j["events"][i];
        e["verified"] = !a.no_verify;
        all.push_back(e);
      } else {
        EventRow(events[i]);
      }
    }
    if (a.limit > 0 && shown >= a.limit) break;
    if (!j["next_cursor"].is_null()) {
      cursor = j["next_cursor"].get<std::string>();
      continue;
    }
    if (a.follow) {
      // Then live, in ledger order, from the end of the tree just answered.
      std::fflush(stdout);
      return Follow(s, base.substr(base.find('?') + 1), j["tree_size"].get<uint64_t>(),
                    !a.no_verify, key);
    }
    break;
  }
  if (s.json) {
    std::printf("%s\n", nlohmann::json({{"events", all},
                                        {"verified", !a.no_verify},
                                        {"checkpoint_size", checkpoint_size}})
                            .dump(2)
                            .c_str());
  } else if (!a.no_verify) {
    std::printf("%d event(s), each verified against the signed checkpoint of %llu entries\n", shown,
                static_cast<unsigned long long>(checkpoint_size));
  } else {
    std::printf("%d event(s), NOT verified (--no-verify)\n", shown);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "latchctl: request, approve and audit access through latch-collector.\n\n"
      "Examples:\n"
      "  latchctl request postgres-prod --for 30m --reason \"OPS-123: fix the replica\"\n"
      "  latchctl requests --pending              what waits for you\n"
      "  latchctl approve 12 --comment ok\n"
      "  latchctl events --grant 7                a grant's whole story, each entry proven\n"
      "  latchctl verify                          the ledger's checkpoint, signed and consistent\n"
      "Settings: flags, else LATCH_SERVER, LATCH_TOKEN, LATCH_CA, LATCH_LEDGER_KEY, else\n"
      "~/.config/latch/latchctl.toml (server, token_file, ca, ledger_key, cert, key)."};
  Settings s;
  std::string token_file;
  app.add_option("--server", s.server, "https://HOST:PORT of latch-collector's API");
  app.add_option("--token-file", token_file, "file holding your API token");
  app.add_option("--ca", s.ca, "certificate that signs (or is) the collector's");
  app.add_option("--ledger-key", s.ledger_key, "the ledger's verifier key (for verify)");
  app.add_option("--cert", s.cert,
                 "client certificate (PEM) to authenticate with, instead of a token");
  app.add_option("--key", s.key, "the client certificate's private key (PEM)");
  app.add_flag("--json", s.json, "print JSON");
  app.require_subcommand(1);
  std::string resource, duration = "1h", reason, comment;
  uint64_t id = 0;
  bool pending = false, all = false;
  auto* request = app.add_subcommand("request", "ask for access to a resource");
  request->add_option("resource", resource)->required();
  request->add_option("--for", duration, "how long (30m, 2h, ...)");
  request->add_option("--reason", reason, "why");
  auto* requests = app.add_subcommand("requests", "your requests and those you may review");
  requests->add_flag("--pending", pending, "only pending ones");
  requests->add_flag("--all", all, "every request");
  auto* approve = app.add_subcommand("approve", "approve a request");
  auto* deny = app.add_subcommand("deny", "deny a request");
  auto* cancel = app.add_subcommand("cancel", "withdraw your request");
  for (auto* c : {approve, deny, cancel}) c->add_option("id", id)->required();
  for (auto* c : {approve, deny}) c->add_option("--comment", comment);
  auto* revoke = app.add_subcommand("revoke", "end a grant now");
  revoke->add_option("grant", id)->required();
  revoke->add_option("--reason", reason);
  auto* grants = app.add_subcommand("grants", "live grants and where they are in effect");
  bool past = false;
  grants->add_flag("--past", past, "also the grants that have ended");
  auto* verify = app.add_subcommand("verify", "check the ledger's checkpoint");
  EventsArgs ev;
  auto* events = app.add_subcommand(
      "events",
      "the audit trail, each result proven in the ledger\n"
      "  e.g. latchctl events --host db-host-1 --since 1h\n"
      "       latchctl events --grant 12            (request, approvals, use, end)\n"
      "       latchctl events --user alice --verdict deny --since 1d");
  events->add_option("--host", ev.host, "one host's events");
  events->add_option("--user", ev.user, "events about this identity");
  events->add_option("--resource", ev.resource, "one resource (by name)");
  events->add_option("--grant", ev.grant, "everything about one grant");
  events->add_option("--verdict", ev.verdict, "allow, deny or audit")
      ->check(CLI::IsMember({"allow", "deny", "audit"}));
  events->add_option("--kind", ev.kind, "decision, loss, requestCreated, grantIssued, ...");
  events->add_option("--since", ev.since, "from this long ago (1h, 30m) or Unix ns");
  events->add_option("--until", ev.until, "until this long ago, or Unix ns");
  events->add_option("--limit", ev.limit, "at most this many")->check(CLI::PositiveNumber);
  events->add_flag("--follow", ev.follow, "keep printing new events as they arrive");
  events->add_flag("--no-verify", ev.no_verify, "show results without checking their proofs");
  // An example under every subcommand's --help.
  request->footer(
      "Example:\n  latchctl request postgres-prod --for 30m --reason \"OPS-123: fix the replica\"");
  requests->footer("Examples:\n  latchctl requests --pending\n  latchctl --json requests --all");
  approve->footer("Example:\n  latchctl approve 12 --comment \"ok for the migration\"");
  deny->footer("Example:\n  latchctl deny 12 --comment \"use the replica\"");
  cancel->footer("Example:\n  latchctl cancel 12");
  revoke->footer("Example:\n  latchctl revoke 7 --reason \"done early\"");
  grants->footer("Examples:\n  latchctl grants\n  latchctl grants --past");
  verify->footer(
      "Example:\n  latchctl --ledger-key \"$(cat ledger.vkey)\" verify   # saves the checkpoint "
      "it checked");
  events->footer(
      "Examples:\n  latchctl events --grant 7\n"
      "  latchctl events --host db-1 --verdict deny --since 1h\n"
      "  latchctl events --user alice --kind exec --follow");
  for (auto* c : {request, requests, approve, deny, cancel, revoke, grants, verify, events})
    c->fallthrough();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help is not an error; bad usage is 2
  }
  Resolve(&s, token_file);

  try {
    if (verify->parsed()) return Verify(s);
    if (events->parsed()) return Events(s, ev);
    if (request->parsed()) {
      nlohmann::json b = {{"resource", resource}, {"duration", duration}, {"reason", reason}};
      return Show(s, Call(s, "POST", "/v1/requests", b.dump()), [](const auto& j) {
        std::printf("request %llu is %s\n",
                    static_cast<unsigned long long>(j["id"].template get<uint64_t>()),
                    T(j["state"].template get<std::string>()).c_str());
      });
    }
    if (requests->parsed()) {
      return Show(
          s, Call(s, "GET", all ? "/v1/requests?all=1" : "/v1/requests"), [&](const auto& j) {
            std::printf("%-6s %-10s %-12s %-16s %-8s %s\n", "ID", "STATE", "REQUESTER", "RESOURCE",
                        "FOR", "REASON");
            for (const auto& q : j["requests"]) {
              if (pending && q["state"] != "pending") continue;
              RequestRow(q);
              if (q["state"] == "pending") {
                std::printf("       needs %s%s\n",
                            T(q["still_needed"].template get<std::string>()).c_str(),
                            q["may_review"].template get<bool>() ? " (you may review it)" : "");
              }
            }
          });
    }
    if (approve->parsed() || deny->parsed() || cancel->parsed()) {
      std::string action = approve->parsed() ? "approve" : deny->parsed() ? "deny" : "cancel";
      nlohmann::json b = nlohmann::json::object();
      if (!cancel->parsed() && !comment.empty()) b["comment"] = comment;
      return Show(s, Call(s, "POST", "/v1/requests/" + std::to_string(id) + "/" + action, b.dump()),
                  [](const auto& j) {
                    std::printf("request %llu is %s",
                                static_cast<unsigned long long>(j["id"].template get<uint64_t>()),
                                T(j["state"].template get<std::string>()).c_str());
                    if (j.contains("grant_id")) {
                      std::printf(" (grant %llu)", static_cast<unsigned long long>(
                                                       j["grant_id"].template get<uint64_t>()));
                    }
                    std::printf("\n");
                  });
    }
    if (revoke->parsed()) {
      nlohmann::json b = nlohmann::json::object();
      if (!reason.empty()) b["reason"] = reason;
      return Show(s, Call(s, "POST", "/v1/grants/" + std::to_string(id) + "/revoke", b.dump()),
                  [&](const auto&) {
                    std::printf("grant %llu revoked\n", static_cast<unsigned long long>(id));
                  });
    }
    if (grants->parsed()) {
      return Show(s, Call(s, "GET", past ? "/v1/grants?past=1" : "/v1/grants"), [](const auto& j) {
        std::printf("%-6s %-22s %-10s %-20s %s\n", "ID", "PRINCIPALS", "RESOURCES", "UNTIL (UTC)",
                    "EFFECTIVE ON");
        for (const auto& g : j["grants"]) {
          std::string hosts;
          for (auto& [h, at] : g["effective_since"].items()) hosts += T(h) + " ";
          time_t until =
              static_cast<time_t>(g["grant"]["not_after_ns"].template get<int64_t>() / 1000000000);
          char when[32];
          std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", std::gmtime(&until));
          std::printf("%-6s %-22s %-10s %-20s %s%s\n",
                      std::to_string(g["id"].template get<uint64_t>()).c_str(),
                      T(g["grant"]["principals"].dump()).c_str(),
                      T(g["grant"]["resources"].dump()).c_str(), when,
                      hosts.empty() ? "(not yet)" : hosts.c_str(),
                      g["grant"]["break_glass"].template get<bool>() ? "  [BREAK-GLASS]" : "");
        }
        if (j.contains("past")) {
          std::printf("\n%-6s %-22s %-10s %-8s %s\n", "ID", "PRINCIPALS", "RESOURCES", "ENDED",
                      "AT (UTC)");
          for (const auto& g : j["past"]) {
            time_t at = static_cast<time_t>(g["ended_at_ns"].template get<int64_t>() / 1000000000);
            char when[32];
            std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", std::gmtime(&at));
            std::printf("%-6s %-22s %-10s %-8s %s\n",
                        std::to_string(g["id"].template get<uint64_t>()).c_str(),
                        T(g["grant"]["principals"].dump()).c_str(),
                        T(g["grant"]["resources"].dump()).c_str(),
                        T(g["ended"].template get<std::string>()).c_str(), when);
          }
        }
      });
    }
  } catch (const Unreachable& e) {
    std::fprintf(stderr,
                 "latchctl: cannot reach the collector: %s\n"
                 "  (the server comes from --server, LATCH_SERVER or `server` in %s/latchctl.toml;"
                 " is latch-collector running with an [api] section?)\n",
                 e.what(), ConfigDir().c_str());
    return 3;
  }
  return 2;
}
