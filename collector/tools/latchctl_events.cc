#include "collector/tools/latchctl_events.h"

#include <arpa/inet.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "collector/client/event_answer.h"
#include "collector/tools/latchctl_witnesses.h"
#include "collector/workflow/duration.h"
#include "lib/tlog/base64.h"
#include "lib/tlog/checkpoint.h"

namespace latchctl {
namespace {

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

}  // namespace

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
  // Pinned witnesses (issue 18): what is shown must be history they saw.
  Witnesses pinned;
  if (latch::Status w = LoadWitnesses(s, &pinned); !w.ok()) {
    std::fprintf(stderr, "latchctl: %s\n", w.message().c_str());
    return 2;
  }
  std::string proven_note;              // the last page's checkpoint
  std::vector<uint64_t> shown_indexes;  // of the events shown
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
      proven_note = j["checkpoint"].get<std::string>();
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
      shown_indexes.push_back(events[i].index);
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
  // With pinned witnesses, the checkpoint the events were proven against
  // must be consistent with the one they cosigned; events past that one are
  // not witnessed yet (said, not hidden).
  std::string witnessed_line;
  nlohmann::json witnessed_json;
  if (!a.no_verify && !pinned.keys.empty() && !proven_note.empty()) {
    latch::tlog::Checkpoint proven;
    WitnessedView view;
    latch::Status st = latch::tlog::OpenCheckpoint(proven_note, key, &proven);
    if (st.ok()) st = CheckAgainstWitnessed(s, key, pinned, proven, &view);
    if (!st.ok()) {
      std::fprintf(stderr, "latchctl: NOT VERIFIED: against the witnesses: %s\n",
                   st.ToString().c_str());
      return 1;
    }
    size_t covered = 0;
    for (uint64_t i : shown_indexes) covered += i < view.checkpoint.size ? 1 : 0;
    witnessed_line = "; " + std::to_string(covered) + " of them in the witnessed checkpoint of " +
                     std::to_string(view.checkpoint.size) + " entries, " +
                     CosignedBy(pinned, view.cosigned) +
                     (covered < shown_indexes.size() ? " (the rest not witnessed yet)" : "");
    witnessed_json = {{"witnessed_size", view.checkpoint.size}, {"witnessed_events", covered}};
    if (s.json) {
      for (auto& e : all) e["witnessed"] = e["index"].get<uint64_t>() < view.checkpoint.size;
    }
  }
  if (s.json) {
    nlohmann::json answer = {
        {"events", all}, {"verified", !a.no_verify}, {"checkpoint_size", checkpoint_size}};
    if (!witnessed_json.is_null()) answer.update(witnessed_json);
    std::printf("%s\n", answer.dump(2).c_str());
  } else if (!a.no_verify) {
    std::printf("%d event(s), each verified against the signed checkpoint of %llu entries%s\n",
                shown, static_cast<unsigned long long>(checkpoint_size), witnessed_line.c_str());
  } else {
    std::printf("%d event(s), NOT verified (--no-verify)\n", shown);
  }
  return 0;
}

}  // namespace latchctl
