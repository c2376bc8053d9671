// latchctl: requesters, approvers and auditors at the collector's HTTPS API.
//
//   latchctl request RESOURCE --for 30m --reason "..."   ask for access
//   latchctl requests [--pending] [--all]                your requests and your inbox
//   latchctl approve ID [--comment ...]   latchctl deny ID [--comment ...]   latchctl cancel ID
//   latchctl revoke GRANT [--reason ...]   latchctl grants
//   latchctl agents [remove --host H]     enrolled agents, open join tokens; remove one
//   latchctl join-token --host H [--ttl]  a one-time join token for H's agent (admins)
//   latchctl hosts                        per host, the resources the policy gives it and
//                                         since when its kernel holds them
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
#include "collector/tools/latchctl_events.h"
#include "collector/tools/latchctl_settings.h"
#include "collector/tools/latchctl_witnesses.h"
#include "collector/tools/terminal_text.h"
#include "collector/workflow/duration.h"
#include "lib/storage/append_file.h"
#include "lib/tlog/base64.h"
#include "lib/tlog/checkpoint.h"
#include "lib/tlog/proof.h"
#include "lib/tlog/witnessed_checkpoint.h"

namespace {

using latchctl::Call;
using latchctl::ConfigDir;
using latchctl::CosignedBy;
using latchctl::Events;
using latchctl::EventsArgs;
using latchctl::FetchConsistencyProof;
using latchctl::LoadWitnesses;
using latchctl::Reply;
using latchctl::Resolve;
using latchctl::Settings;
using latchctl::Slurp;
using latchctl::T;
using latchctl::Unreachable;
using latchctl::Witnesses;
namespace fs = std::filesystem;

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

// A grant's principals or resources as the server names them (by the
// policy), or as the grant has them when it does not.
std::string Names(const nlohmann::json& g, const char* what) {
  if (!g.contains("names")) return T(g["grant"][what].dump());
  std::string out;
  for (const auto& n : g["names"][what]) out += (out.empty() ? "" : ",") + T(n.get<std::string>());
  return out;
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
  // Pinned witnesses (issue 18): the checkpoint must carry their quorum.
  Witnesses pinned;
  if (latch::Status w = LoadWitnesses(s, &pinned); !w.ok()) {
    std::fprintf(stderr, "latchctl: %s\n", w.message().c_str());
    return 2;
  }
  const auto& witnesses = pinned.keys;
  const size_t quorum = pinned.quorum;
  Reply r = Call(s, "GET", "/checkpoint");
  latch::tlog::Checkpoint now;
  std::vector<size_t> cosigned;
  latch::Status st =
      r.status != 200
          ? latch::Status::IoError("the collector answered " + std::to_string(r.status) + ": " +
                                   T(r.body))
          : latch::tlog::OpenWitnessedCheckpoint(r.body, key, witnesses, quorum, &now, &cosigned);
  if (!st.ok()) {
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
    if (latch::Status p = FetchConsistencyProof(s, before.size, now.size, &proof); !p.ok()) {
      std::fprintf(stderr, "latchctl: %s\n", p.ToString().c_str());
      return 1;
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
      "verified: %s, %llu entries%s%s\n", now.origin.c_str(),
      static_cast<unsigned long long>(now.size),
      witnesses.empty() ? "" : (", " + CosignedBy(pinned, cosigned)).c_str(),
      before.size > 0
          ? (", consistent with the " + std::to_string(before.size) + " seen before").c_str()
          : " (first checkpoint seen; saved)");
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
      "Settings: flags, else LATCH_SERVER, LATCH_TOKEN, LATCH_CA, LATCH_LEDGER_KEY,\n"
      "LATCH_WITNESS_KEYS, else ~/.config/latch/latchctl.toml (server, token_file, ca,\n"
      "ledger_key, witness_keys, witness_quorum, cert, key)."};
  Settings s;
  std::string token_file;
  app.add_option("--server", s.server, "https://HOST:PORT of latch-collector's API");
  app.add_option("--token-file", token_file, "file holding your API token");
  app.add_option("--ca", s.ca, "certificate that signs (or is) the collector's");
  app.add_option("--ledger-key", s.ledger_key, "the ledger's verifier key (for verify)");
  app.add_option("--witness", s.witness_keys,
                 "a witness's key, repeatable: verify demands their cosignatures");
  app.add_option("--witness-quorum", s.witness_quorum,
                 "how many of the --witness keys must have cosigned (default: all)")
      ->check(CLI::Range(1, 1000));
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
  auto* hosts_cmd = app.add_subcommand(
      "hosts", "per host, the resources in force and since when (auditors and approvers)");
  auto* agents_cmd =
      app.add_subcommand("agents", "enrolled agents and open join tokens (admins and auditors)");
  std::string agent_host, ttl = "1h";
  auto* agents_remove =
      agents_cmd->add_subcommand("remove", "remove an agent enrolled by join token (admins)");
  agents_remove->add_option("--host", agent_host, "its host id")->required();
  auto* join_token = app.add_subcommand(
      "join-token", "make a one-time join token that enrols a host's agent (admins)");
  join_token->add_option("--host", agent_host, "the host id it enrols")->required();
  join_token->add_option("--ttl", ttl, "how long it can be used (1m to 30d)");
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
  events->add_option("--verdict", ev.verdict, "allow, deny, audit or cut")
      ->check(CLI::IsMember({"allow", "deny", "audit", "cut"}));
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
  hosts_cmd->footer("Examples:\n  latchctl hosts\n  latchctl --json hosts");
  agents_cmd->footer("Examples:\n  latchctl agents\n  latchctl agents remove --host db-2");
  agents_remove->footer("Example:\n  latchctl agents remove --host db-2");
  join_token->footer(
      "Example:\n  latchctl join-token --host db-2 --ttl 1h\nthen on db-2: latch-agent enrol "
      "--config /etc/latch/agent.toml --token <token> --ca-pin <pin>");
  verify->footer(
      "Examples:\n  latchctl --ledger-key \"$(cat ledger.vkey)\" verify   # saves the checkpoint "
      "it checked\n"
      "  latchctl --ledger-key \"$(cat ledger.vkey)\" --witness \"$(cat w1.vkey)\" --witness "
      "\"$(cat w2.vkey)\" --witness-quorum 1 verify");
  events->footer(
      "Examples:\n  latchctl events --grant 7\n"
      "  latchctl events --host db-1 --verdict deny --since 1h\n"
      "  latchctl events --user alice --kind exec --follow");
  for (auto* c : {request, requests, approve, deny, cancel, revoke, grants, hosts_cmd, agents_cmd,
                  agents_remove, join_token, verify, events})
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
    if (join_token->parsed()) {
      nlohmann::json b = {{"host", agent_host}, {"ttl", ttl}};
      return Show(s, Call(s, "POST", "/v1/agents/tokens", b.dump()), [](const auto& j) {
        const std::string host = T(j["host"].template get<std::string>());
        const std::string token = j["token"].template get<std::string>();
        const std::string pin = j["ca_pin"].template get<std::string>();
        std::printf(
            "join token for %s (one use):\n  %s\ncollector key pin:\n  %s\n"
            "On %s: latch-agent enrol --config /etc/latch/agent.toml --token %s --ca-pin %s\n",
            host.c_str(), T(token).c_str(), T(pin).c_str(), host.c_str(), T(token).c_str(),
            T(pin).c_str());
      });
    }
    if (agents_remove->parsed()) {
      nlohmann::json b = {{"host", agent_host}};
      return Show(s, Call(s, "POST", "/v1/agents/remove", b.dump()), [](const auto& j) {
        std::printf("%s removed\n", T(j["host"].template get<std::string>()).c_str());
      });
    }
    if (agents_cmd->parsed()) {
      return Show(s, Call(s, "GET", "/v1/agents"), [](const auto& j) {
        std::printf("%-24s %-10s %-9s %s\n", "HOST", "SOURCE", "CONNECTED", "CURVE KEY");
        for (const auto& a : j["agents"]) {
          std::printf("%-24s %-10s %-9s %s\n", T(a["host"].template get<std::string>()).c_str(),
                      T(a["source"].template get<std::string>()).c_str(),
                      a["connected"].template get<bool>() ? "yes" : "no",
                      T(a["curve_public_key"].template get<std::string>()).c_str());
        }
        for (const auto& t : j["open_tokens"]) {
          std::printf("open join token for %s (sha256 %s...)\n",
                      T(t["host"].template get<std::string>()).c_str(),
                      T(t["sha256"].template get<std::string>()).c_str());
        }
      });
    }
    if (hosts_cmd->parsed()) {
      return Show(s, Call(s, "GET", "/v1/hosts"), [](const auto& j) {
        auto utc = [](int64_t ns) {
          time_t t = static_cast<time_t>(ns / 1000000000);
          char when[32];
          std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", std::gmtime(&t));
          return std::string(when);
        };
        std::printf("%-20s %-20s %-20s %s\n", "HOST", "POLICY SINCE (UTC)", "IN FORCE SINCE",
                    "RESOURCES");
        for (const auto& h : j["hosts"]) {
          const auto& in_force = h["in_force_since_ns"];
          std::printf(
              "%-20s %-20s %-20s", T(h["host"].template get<std::string>()).c_str(),
              utc(h["policy_since_ns"].template get<int64_t>()).c_str(),
              in_force.is_null() ? "(not yet)" : utc(in_force.template get<int64_t>()).c_str());
          if (h["resources"].empty()) std::printf(" (none)");
          std::printf("\n");
          for (const auto& r : h["resources"]) {
            std::string dests;
            for (const auto& d : r["destinations"]) {
              dests += (dests.empty() ? "" : ",") + T(d.template get<std::string>());
            }
            std::printf("    %-16s %s %s/%s %s\n", T(r["name"].template get<std::string>()).c_str(),
                        dests.c_str(), T(r["protocol"].template get<std::string>()).c_str(),
                        T(r["ports"].template get<std::string>()).c_str(),
                        T(r["mode"].template get<std::string>()).c_str());
          }
        }
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
                      Names(g, "principals").c_str(), Names(g, "resources").c_str(), when,
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
                        Names(g, "principals").c_str(), Names(g, "resources").c_str(),
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
