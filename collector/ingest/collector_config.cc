#include "collector/ingest/collector_config.h"

#include <algorithm>
#include <fstream>
#include <set>

#include "lib/config/toml_settings.h"
#include "lib/tlog/cosignature.h"
#include "lib/tlog/signed_note.h"
#include "schemas/curve_key.h"
#include "schemas/host_id.h"

namespace latch::collector {
using config::Bad;
using config::CheckKeys;
using config::Get;
using config::GetInRange;

namespace {

// [[witness]] and [witnessing] (issue 18).
Status ParseWitnesses(const toml::table& root, const std::string& source, CollectorConfig* c) {
  if (const toml::node* n = root.get("witness")) {
    const toml::array* list = n->as_array();
    if (list == nullptr) return Bad(source, n->source(), "'witness' must be [[witness]] tables");
    std::set<std::string> names;
    for (const toml::node& e : *list) {
      const toml::table* t = e.as_table();
      if (t == nullptr) return Bad(source, e.source(), "'witness' must be [[witness]] tables");
      LATCH_RETURN_IF_ERROR(CheckKeys(*t, source, {"url", "key", "ca"}));
      CollectorConfig::Witness w;
      LATCH_RETURN_IF_ERROR(Get(*t, source, "url", &w.url, true));
      LATCH_RETURN_IF_ERROR(Get(*t, source, "key", &w.key, true));
      LATCH_RETURN_IF_ERROR(Get(*t, source, "ca", &w.ca, false));
      const bool printable =
          std::all_of(w.url.begin(), w.url.end(), [](char ch) { return ch > 0x20 && ch < 0x7f; });
      if (!w.url.starts_with("https://") || w.url.size() <= 8 || !printable) {
        return Bad(source, t->source(), "witness url must be an https:// URL");
      }
      tlog::CosignatureVerifier key;
      if (Status s = tlog::CosignatureVerifier::Parse(w.key, &key); !s.ok()) {
        return Bad(source, t->source(), "witness key: " + s.message());
      }
      if (!names.insert(key.name()).second) {
        return Bad(source, t->source(), "two witnesses are named " + key.name());
      }
      c->witnesses.push_back(std::move(w));
    }
  }
  c->witness_quorum = c->witnesses.size() / 2 + (c->witnesses.empty() ? 0 : 1);
  if (const toml::node* n = root.get("witnessing")) {
    const toml::table* t = n->as_table();
    if (t == nullptr) return Bad(source, n->source(), "'witnessing' must be a [witnessing] table");
    if (c->witnesses.empty()) {
      return Bad(source, t->source(), "[witnessing] needs at least one [[witness]]");
    }
    LATCH_RETURN_IF_ERROR(CheckKeys(*t, source, {"quorum", "interval_ms", "timeout_ms"}));
    uint64_t quorum = c->witness_quorum;
    LATCH_RETURN_IF_ERROR(
        GetInRange(*t, source, "quorum", 1, static_cast<int64_t>(c->witnesses.size()), &quorum));
    c->witness_quorum = quorum;
    LATCH_RETURN_IF_ERROR(
        GetInRange(*t, source, "interval_ms", 10, 3'600'000, &c->witness_interval_ms));
    LATCH_RETURN_IF_ERROR(
        GetInRange(*t, source, "timeout_ms", 100, 600'000, &c->witness_timeout_ms));
  }
  return Status::Ok();
}

}  // namespace

Status ParseCollectorConfig(std::string_view toml_text, const std::string& source,
                            CollectorConfig* out) {
  toml::table root;
  LATCH_RETURN_IF_ERROR(config::ParseToml(toml_text, source, &root));
  LATCH_RETURN_IF_ERROR(CheckKeys(
      root, source,
      {"data_dir", "origin", "endpoints", "batch_max_entries", "batch_max_age_ms",
       "max_message_bytes", "agent", "policy", "index", "api", "api_token", "api_client", "webhook",
       "agent_silent_after_ms", "snapshot_every_entries", "storage", "witness", "witnessing"}));
  CollectorConfig c;
  LATCH_RETURN_IF_ERROR(Get(root, source, "data_dir", &c.data_dir, true));
  LATCH_RETURN_IF_ERROR(Get(root, source, "origin", &c.origin, true));
  LATCH_RETURN_IF_ERROR(Get(root, source, "policy", &c.policy, false));
  LATCH_RETURN_IF_ERROR(Get(root, source, "index", &c.index_path, false));
  if (!tlog::IsValidKeyName(c.origin)) {
    return Bad(source, root.source(), "origin must be printable ASCII without spaces or '+'");
  }
  if (const toml::node* n = root.get("endpoints")) {
    const toml::array* list = n->as_array();
    if (list == nullptr || list->empty()) {
      return Bad(source, n->source(), "endpoints must be a non-empty list of strings");
    }
    c.endpoints.clear();
    for (const toml::node& e : *list) {
      auto s = e.value<std::string>();
      if (!s || s->empty()) return Bad(source, e.source(), "endpoints must be strings");
      c.endpoints.push_back(*s);
    }
  }
  uint64_t entries = c.batch_max_entries, age = c.batch_max_age_ms;
  LATCH_RETURN_IF_ERROR(GetInRange(root, source, "batch_max_entries", 1, 1 << 20, &entries));
  LATCH_RETURN_IF_ERROR(GetInRange(root, source, "batch_max_age_ms", 1, 60000, &age));
  LATCH_RETURN_IF_ERROR(
      GetInRange(root, source, "max_message_bytes", 4096, int64_t{1} << 30, &c.max_message_bytes));
  LATCH_RETURN_IF_ERROR(GetInRange(root, source, "agent_silent_after_ms", 2000, 86'400'000,
                                   &c.agent_silent_after_ms));
  LATCH_RETURN_IF_ERROR(GetInRange(root, source, "snapshot_every_entries", 1000, int64_t{1} << 40,
                                   &c.snapshot_every_entries));
  c.batch_max_entries = static_cast<uint32_t>(entries);
  c.batch_max_age_ms = static_cast<uint32_t>(age);
  if (const toml::node* n = root.get("agent")) {
    const toml::array* list = n->as_array();
    if (list == nullptr) return Bad(source, n->source(), "'agent' must be [[agent]] tables");
    std::set<std::string> hosts;
    for (const toml::node& e : *list) {
      const toml::table* t = e.as_table();
      if (t == nullptr) return Bad(source, e.source(), "'agent' must be [[agent]] tables");
      LATCH_RETURN_IF_ERROR(CheckKeys(*t, source, {"host_id", "curve_public_key"}));
      std::string host, key;
      LATCH_RETURN_IF_ERROR(Get(*t, source, "host_id", &host, true));
      LATCH_RETURN_IF_ERROR(Get(*t, source, "curve_public_key", &key, true));
      if (!schema::IsHostId(host)) {
        return Bad(source, t->source(),
                   "host_id '" + host + "' is not a host id (" + schema::kHostIdRule + ")");
      }
      if (!schema::IsCurveKey(key)) {
        return Bad(source, t->source(),
                   "agent '" + host + "': curve_public_key must be 40 Z85 characters");
      }
      if (!hosts.insert(host).second) {
        return Bad(source, t->source(), "agent '" + host + "' is enrolled twice");
      }
      if (!c.agents.emplace(key, host).second) {
        return Bad(source, t->source(), "agent '" + host + "' reuses another agent's key");
      }
    }
  }
  if (const toml::node* n = root.get("storage")) {
    const toml::table* t = n->as_table();
    if (t == nullptr) return Bad(source, n->source(), "'storage' must be a [storage] table");
    LATCH_RETURN_IF_ERROR(CheckKeys(*t, source, {"postgres", "key", "sequencer_wait_ms"}));
    LATCH_RETURN_IF_ERROR(Get(*t, source, "postgres", &c.storage_postgres, true));
    if (c.storage_postgres.empty()) {
      return Bad(source, t->source(), "storage postgres must be a connection string or URI");
    }
    LATCH_RETURN_IF_ERROR(Get(*t, source, "key", &c.storage_key, false));
    int64_t wait = c.sequencer_wait_ms;
    LATCH_RETURN_IF_ERROR(Get(*t, source, "sequencer_wait_ms", &wait, false));
    if (wait < 50 || wait > 60000) {
      return Bad(source, t->source(), "storage sequencer_wait_ms must be 50 to 60000");
    }
    c.sequencer_wait_ms = static_cast<int>(wait);
  }
  if (const toml::node* n = root.get("api")) {
    const toml::table* t = n->as_table();
    if (t == nullptr) return Bad(source, n->source(), "'api' must be an [api] table");
    LATCH_RETURN_IF_ERROR(
        CheckKeys(*t, source,
                  {"listen", "cert", "key", "idle_timeout_ms", "max_connections_per_address",
                   "public_log", "advertise", "session_minutes"}));
    c.api_enabled = true;
    std::string listen = c.api_address + ":" + std::to_string(c.api_port);
    LATCH_RETURN_IF_ERROR(Get(*t, source, "listen", &listen, false));
    size_t colon = listen.rfind(':');
    int port = colon == std::string::npos ? -1 : std::atoi(listen.c_str() + colon + 1);
    if (colon == std::string::npos || colon == 0 || port < 0 || port > 65535) {
      return Bad(source, t->source(), "api listen must be ADDRESS:PORT");
    }
    c.api_address = listen.substr(0, colon);
    c.api_port = static_cast<uint16_t>(port);
    LATCH_RETURN_IF_ERROR(Get(*t, source, "advertise", &c.api_advertise, false));
    if (!c.api_advertise.empty()) {
      // It travels as the sequencer's PostgreSQL application_name (63 bytes
      // at most, printable ASCII) and in JSON answers.
      bool printable = true;
      for (char ch : c.api_advertise) printable &= ch > ' ' && ch < 0x7f && ch != '"' && ch != '\\';
      if (c.api_advertise.rfind("https://", 0) != 0 || c.api_advertise.size() > 47 || !printable) {
        return Bad(source, t->source(),
                   "api advertise must be an https:// URL of at most 47 printable characters");
      }
    }
    LATCH_RETURN_IF_ERROR(Get(*t, source, "cert", &c.api_cert, false));
    LATCH_RETURN_IF_ERROR(Get(*t, source, "key", &c.api_key, false));
    int64_t idle = c.api_idle_timeout_ms, per_address = c.api_max_connections_per_address;
    LATCH_RETURN_IF_ERROR(Get(*t, source, "idle_timeout_ms", &idle, false));
    LATCH_RETURN_IF_ERROR(Get(*t, source, "max_connections_per_address", &per_address, false));
    if (idle < 100 || idle > 600000) {
      return Bad(source, t->source(), "api idle_timeout_ms must be 100 to 600000");
    }
    if (per_address < 1 || per_address > 64) {
      return Bad(source, t->source(), "api max_connections_per_address must be 1 to 64");
    }
    c.api_idle_timeout_ms = static_cast<int>(idle);
    c.api_max_connections_per_address = static_cast<int>(per_address);
    LATCH_RETURN_IF_ERROR(Get(*t, source, "public_log", &c.api_public_log, false));
    int64_t session = c.api_session_minutes;
    LATCH_RETURN_IF_ERROR(Get(*t, source, "session_minutes", &session, false));
    if (session < 1 || session > 24 * 60) {
      return Bad(source, t->source(), "api session_minutes must be 1 to 1440 (a day)");
    }
    c.api_session_minutes = static_cast<int>(session);
  }
  if (const toml::node* n = root.get("api_client")) {
    const toml::array* list = n->as_array();
    if (list == nullptr)
      return Bad(source, n->source(), "'api_client' must be [[api_client]] tables");
    for (const toml::node& e : *list) {
      const toml::table* t = e.as_table();
      if (t == nullptr)
        return Bad(source, e.source(), "'api_client' must be [[api_client]] tables");
      LATCH_RETURN_IF_ERROR(CheckKeys(*t, source, {"identity", "cert_sha256"}));
      std::string identity, hash;
      LATCH_RETURN_IF_ERROR(Get(*t, source, "identity", &identity, true));
      LATCH_RETURN_IF_ERROR(Get(*t, source, "cert_sha256", &hash, true));
      bool hex =
          hash.size() == 64 && hash.find_first_not_of("0123456789abcdef") == std::string::npos;
      if (!hex) return Bad(source, t->source(), "cert_sha256 must be 64 lower-case hex digits");
      if (!c.api_client_certs.emplace(hash, identity).second) {
        return Bad(source, t->source(), "the same certificate is listed twice");
      }
    }
  }
  if (const toml::node* n = root.get("webhook")) {
    const toml::array* list = n->as_array();
    if (list == nullptr) return Bad(source, n->source(), "'webhook' must be [[webhook]] tables");
    for (const toml::node& e : *list) {
      const toml::table* t = e.as_table();
      if (t == nullptr) return Bad(source, e.source(), "'webhook' must be [[webhook]] tables");
      LATCH_RETURN_IF_ERROR(CheckKeys(*t, source, {"url", "events", "secret", "ca"}));
      CollectorConfig::Webhook w;
      LATCH_RETURN_IF_ERROR(Get(*t, source, "url", &w.url, true));
      LATCH_RETURN_IF_ERROR(Get(*t, source, "secret", &w.secret, false));
      LATCH_RETURN_IF_ERROR(Get(*t, source, "ca", &w.ca, false));
      if (!w.url.starts_with("http://") && !w.url.starts_with("https://")) {
        return Bad(source, t->source(), "webhook url must start with http:// or https://");
      }
      if (const toml::node* ev = t->get("events")) {
        const toml::array* evs = ev->as_array();
        if (evs == nullptr) return Bad(source, ev->source(), "webhook events must be a list");
        for (const toml::node& x : *evs) {
          auto name = x.value<std::string>();
          if (!name || (*name != "request.created" && *name != "request.reviewed" &&
                        *name != "request.decided")) {
            return Bad(source, x.source(),
                       "webhook events are request.created, request.reviewed, request.decided");
          }
          w.events.push_back(*name);
        }
      }
      c.webhooks.push_back(std::move(w));
    }
  }
  LATCH_RETURN_IF_ERROR(ParseWitnesses(root, source, &c));
  if (const toml::node* n = root.get("api_token")) {
    const toml::array* list = n->as_array();
    if (list == nullptr)
      return Bad(source, n->source(), "'api_token' must be [[api_token]] tables");
    for (const toml::node& e : *list) {
      const toml::table* t = e.as_table();
      if (t == nullptr) return Bad(source, e.source(), "'api_token' must be [[api_token]] tables");
      LATCH_RETURN_IF_ERROR(CheckKeys(*t, source, {"identity", "sha256"}));
      std::string identity, hash;
      LATCH_RETURN_IF_ERROR(Get(*t, source, "identity", &identity, true));
      LATCH_RETURN_IF_ERROR(Get(*t, source, "sha256", &hash, true));
      bool hex =
          hash.size() == 64 && hash.find_first_not_of("0123456789abcdef") == std::string::npos;
      if (!hex) return Bad(source, t->source(), "sha256 must be 64 lower-case hex digits");
      if (!c.api_tokens.emplace(hash, identity).second) {
        return Bad(source, t->source(), "the same token is listed twice");
      }
    }
  }
  *out = std::move(c);
  return Status::Ok();
}

Status LoadCollectorConfig(const std::string& path, CollectorConfig* out) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("cannot read config file " + path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  LATCH_RETURN_IF_ERROR(ParseCollectorConfig(text, path, out));
  out->path = path;
  return Status::Ok();
}

std::string CollectorConfig::ApiAdvertised(uint16_t bound_port) const {
  if (!api_enabled) return "";
  if (!api_advertise.empty()) return api_advertise;
  if (api_address == "0.0.0.0" || api_address == "::" || api_address == "[::]" ||
      api_address.empty()) {
    return "";  // every address: which one clients use is not known here
  }
  const bool v6 = api_address.find(':') != std::string::npos && api_address.front() != '[';
  std::string url =
      "https://" + (v6 ? "[" + api_address + "]" : api_address) + ":" + std::to_string(bound_port);
  return url.size() <= 47 ? url : "";
}

}  // namespace latch::collector
