#include "agent/agent_config.h"

#include <fstream>
#include <map>
#include <set>

#include "agent/kernel_fs.h"
#include "lib/config/toml_settings.h"
#include "lib/tlog/cosignature.h"
#include "lib/tlog/signed_note.h"
#include "schemas/curve_key.h"

namespace latch::agent {
namespace {

using config::Bad;
using config::CheckKeys;
using config::Get;
using config::GetInRange;
using config::ParseToml;

Status ParseResource(const toml::table& t, const std::string& source, resource::Resource* r) {
  LATCH_RETURN_IF_ERROR(
      CheckKeys(t, source, {"id", "name", "destinations", "protocol", "ports", "mode"}));
  int64_t id = 0;
  LATCH_RETURN_IF_ERROR(Get(t, source, "id", &id, true));
  if (id <= 0 || id > UINT32_MAX)
    return Bad(source, t.source(), "resource id must be 1 to 4294967295");
  r->id = static_cast<uint32_t>(id);
  LATCH_RETURN_IF_ERROR(Get(t, source, "name", &r->name, true));
  std::string protocol = "tcp";
  std::string ports;
  std::string mode = "enforce";
  LATCH_RETURN_IF_ERROR(Get(t, source, "protocol", &protocol, false));
  LATCH_RETURN_IF_ERROR(Get(t, source, "ports", &ports, true));
  LATCH_RETURN_IF_ERROR(Get(t, source, "mode", &mode, false));
  Status s = resource::ParseProtocol(protocol, &r->protocol);
  if (s.ok()) s = resource::ParsePortRange(ports, &r->port_lo, &r->port_hi);
  if (s.ok()) s = resource::ParseMode(mode, &r->mode);
  if (!s.ok()) return Bad(source, t.source(), "resource '" + r->name + "': " + s.message());
  const toml::array* dests = t["destinations"].as_array();
  if (dests == nullptr || dests->empty()) {
    return Bad(source, t.source(),
               "resource '" + r->name + "' needs a non-empty 'destinations' list");
  }
  for (const toml::node& d : *dests) {
    auto text = d.value<std::string>();
    if (!text) return Bad(source, d.source(), "destinations must be strings");
    s = resource::ParseDestination(*text, r);
    if (!s.ok()) return Bad(source, d.source(), "resource '" + r->name + "': " + s.message());
  }
  return Status::Ok();
}

// The settings that say which collector to trust and how to reach it: from
// the config, or from the file enrolment wrote (agent_enrolment.h). Each is
// checked when present; which must be present is decided once both are read
// (ResolveAgentDefaults).
Status ParseCollectorKeys(const toml::table& t, const std::string& source, CollectorSettings* c) {
  if (const toml::node* n = t.get("endpoints")) {
    const toml::array* list = n->as_array();
    if (list == nullptr || list->empty()) {
      return Bad(source, n->source(), "collector 'endpoints' must be a non-empty list");
    }
    for (const toml::node& e : *list) {
      auto v = e.value<std::string>();
      if (!v || v->empty()) return Bad(source, e.source(), "collector endpoints must be strings");
      c->endpoints.push_back(*v);
    }
  }
  LATCH_RETURN_IF_ERROR(Get(t, source, "server_public_key", &c->server_public_key, false));
  if (!c->server_public_key.empty() && !schema::IsCurveKey(c->server_public_key)) {
    return Bad(source, t.source(), "server_public_key must be 40 Z85 characters");
  }
  // One key, or a list while the collector's grant key is being rotated.
  if (const toml::node* grant_key = t.get("grant_key")) {
    if (const toml::array* keys = grant_key->as_array()) {
      for (const toml::node& k : *keys) {
        auto v = k.value<std::string>();
        if (!v) return Bad(source, k.source(), "grant_key list entries must be strings");
        c->grant_keys.push_back(*v);
      }
      if (c->grant_keys.empty()) {
        return Bad(source, grant_key->source(), "grant_key list is empty");
      }
    } else if (auto one = grant_key->value<std::string>()) {
      c->grant_keys.push_back(*one);
    } else {
      return Bad(source, grant_key->source(), "grant_key must be a string or a list of strings");
    }
    tlog::NoteVerifier v;
    for (const std::string& k : c->grant_keys) {
      if (!tlog::NoteVerifier::Parse(k, &v).ok()) {
        return Bad(source, grant_key->source(),
                   "grant_key is not a verifier key (<name>+<id>+<key>)");
      }
    }
  }
  LATCH_RETURN_IF_ERROR(Get(t, source, "ledger_key", &c->ledger_key, false));
  tlog::NoteVerifier v;
  if (!c->ledger_key.empty() && !tlog::NoteVerifier::Parse(c->ledger_key, &v).ok()) {
    return Bad(source, t.source(), "ledger_key is not a verifier key (<name>+<id>+<key>)");
  }
  return Status::Ok();
}

// witness_keys, witness_quorum, witnessed_within_ms (issue 18).
Status ParseWitnessDemand(const toml::table& t, const std::string& source, CollectorSettings* c) {
  LATCH_RETURN_IF_ERROR(config::GetStrings(t, source, "witness_keys", &c->witness_keys, false));
  for (const std::string& k : c->witness_keys) {
    tlog::CosignatureVerifier v;
    if (Status s = tlog::CosignatureVerifier::Parse(k, &v); !s.ok()) {
      return Bad(source, t.source(), "witness_keys: " + s.message());
    }
  }
  uint64_t quorum = 0;
  if (t.get("witness_quorum") != nullptr) {
    if (c->witness_keys.empty()) {
      return Bad(source, t.source(), "witness_quorum needs witness_keys");
    }
    LATCH_RETURN_IF_ERROR(GetInRange(t, source, "witness_quorum", 1,
                                     static_cast<int64_t>(c->witness_keys.size()), &quorum));
  }
  c->witness_quorum = quorum;
  return GetInRange(t, source, "witnessed_within_ms", 1000, 86'400'000, &c->witnessed_within_ms);
}

Status ParseCollector(const toml::table& t, const std::string& source, CollectorSettings* c) {
  LATCH_RETURN_IF_ERROR(CheckKeys(
      t, source,
      {"endpoints", "server_public_key", "grant_key", "ledger_key", "state_dir", "spool_max_bytes",
       "batch_records", "witness_keys", "witness_quorum", "witnessed_within_ms"}));
  c->enabled = true;
  LATCH_RETURN_IF_ERROR(ParseCollectorKeys(t, source, c));
  LATCH_RETURN_IF_ERROR(ParseWitnessDemand(t, source, c));
  LATCH_RETURN_IF_ERROR(Get(t, source, "state_dir", &c->state_dir, false));
  int64_t spool = static_cast<int64_t>(c->spool_max_bytes), batch = c->batch_records;
  LATCH_RETURN_IF_ERROR(Get(t, source, "spool_max_bytes", &spool, false));
  LATCH_RETURN_IF_ERROR(Get(t, source, "batch_records", &batch, false));
  if (spool < (1 << 20)) return Bad(source, t.source(), "spool_max_bytes must be at least 1 MiB");
  if (batch < 1 || batch > 65536)
    return Bad(source, t.source(), "batch_records must be 1 to 65536");
  c->spool_max_bytes = static_cast<uint64_t>(spool);
  c->batch_records = static_cast<uint32_t>(batch);
  return Status::Ok();
}

Status ParseActivity(const toml::table& t, const std::string& source, ActivityOptions* a,
                     RedactionRules* redaction) {
  LATCH_RETURN_IF_ERROR(
      CheckKeys(t, source,
                {"watch", "cgroup", "paths", "throttle_events", "throttle_window_ms",
                 "ring_buffer_bytes", "detach_after_ms", "redact_defaults", "redact"}));
  LATCH_RETURN_IF_ERROR(Get(t, source, "redact_defaults", &redaction->defaults, false));
  if (const toml::node* n = t.get("redact")) {
    const toml::array* list = n->as_array();
    if (list == nullptr) return Bad(source, n->source(), "activity: 'redact' must be a list");
    for (const toml::node& p : *list) {
      auto v = p.value<std::string>();
      if (!v || v->empty()) {
        return Bad(source, p.source(), "activity: redact patterns must be non-empty strings");
      }
      redaction->patterns.push_back(*v);
    }
    std::unique_ptr<ArgvRedactor> check;
    Status s = ArgvRedactor::Create(*redaction, &check);
    if (!s.ok()) return Bad(source, n->source(), "activity: " + s.message());
  }
  std::string watch = WatchModeName(a->mode);
  LATCH_RETURN_IF_ERROR(Get(t, source, "watch", &watch, false));
  Status s = ParseWatchMode(watch, &a->mode);
  if (!s.ok()) return Bad(source, t.source(), "activity: " + s.message());
  LATCH_RETURN_IF_ERROR(Get(t, source, "cgroup", &a->cgroup_dir, false));
  if (a->mode == WatchMode::kCgroup && a->cgroup_dir.empty()) {
    return Bad(source, t.source(), "activity: watch = \"cgroup\" needs 'cgroup'");
  }
  if (const toml::node* n = t.get("paths")) {
    const toml::array* list = n->as_array();
    if (list == nullptr) return Bad(source, n->source(), "activity: 'paths' must be a list");
    a->path_prefixes.clear();
    for (const toml::node& p : *list) {
      auto v = p.value<std::string>();
      if (!v || v->empty() || (*v)[0] != '/' || v->size() > LATCH_PREFIX_MAX) {
        return Bad(source, p.source(),
                   "activity: paths must be absolute paths of at most " +
                       std::to_string(LATCH_PREFIX_MAX) + " bytes");
      }
      a->path_prefixes.push_back(*v);
    }
    if (a->path_prefixes.size() > LATCH_MAX_PREFIXES) {
      return Bad(source, n->source(),
                 "activity: at most " + std::to_string(LATCH_MAX_PREFIXES) + " paths");
    }
  }
  int64_t events = a->throttle_events, window = a->throttle_window_ms, ring = a->ring_bytes;
  uint64_t detach_after = a->detach_after_ms;
  LATCH_RETURN_IF_ERROR(
      config::GetInRange(t, source, "detach_after_ms", 0, 86'400'000, &detach_after));
  a->detach_after_ms = static_cast<uint32_t>(detach_after);
  LATCH_RETURN_IF_ERROR(Get(t, source, "throttle_events", &events, false));
  LATCH_RETURN_IF_ERROR(Get(t, source, "throttle_window_ms", &window, false));
  LATCH_RETURN_IF_ERROR(Get(t, source, "ring_buffer_bytes", &ring, false));
  if (events < 0 || events > 10'000'000) {
    return Bad(source, t.source(), "activity: throttle_events must be 0 to 10000000");
  }
  if (window < 1 || window > 3'600'000) {
    return Bad(source, t.source(), "activity: throttle_window_ms must be 1 to 3600000");
  }
  if (ring < 4096 || ring > (int64_t{1} << 30) || (ring & (ring - 1)) != 0) {
    return Bad(source, t.source(),
               "activity: ring_buffer_bytes must be a power of two from 4096 to 1 GiB");
  }
  a->throttle_events = static_cast<uint32_t>(events);
  a->throttle_window_ms = static_cast<uint32_t>(window);
  a->ring_bytes = static_cast<uint32_t>(ring);
  return Status::Ok();
}

}  // namespace

Status ParseAgentConfig(std::string_view toml_text, const std::string& source, AgentConfig* out) {
  toml::table root;
  LATCH_RETURN_IF_ERROR(config::ParseToml(toml_text, source, &root));
  LATCH_RETURN_IF_ERROR(CheckKeys(
      root, source,
      {"instance", "host_id", "cgroup", "pin_dir", "ring_buffer_bytes", "counters_interval_ms",
       "cut_established_connections", "resource", "collector", "activity", "metrics_listen",
       "guard_check_ms", "reattach_guard", "drain_interval_ms"}));
  AgentConfig c;
  LATCH_RETURN_IF_ERROR(Get(root, source, "instance", &c.instance, false));
  LATCH_RETURN_IF_ERROR(Get(root, source, "host_id", &c.host_id, true));
  LATCH_RETURN_IF_ERROR(Get(root, source, "cgroup", &c.cgroup, false));
  LATCH_RETURN_IF_ERROR(Get(root, source, "pin_dir", &c.pin_dir, false));
  LATCH_RETURN_IF_ERROR(Get(root, source, "metrics_listen", &c.metrics_listen, false));
  int64_t ring = c.ring_buffer_bytes;
  int64_t interval = c.counters_interval_ms;
  LATCH_RETURN_IF_ERROR(Get(root, source, "ring_buffer_bytes", &ring, false));
  LATCH_RETURN_IF_ERROR(Get(root, source, "counters_interval_ms", &interval, false));
  uint64_t guard_check = c.guard_check_ms;
  LATCH_RETURN_IF_ERROR(
      config::GetInRange(root, source, "guard_check_ms", 0, 3'600'000, &guard_check));
  c.guard_check_ms = static_cast<uint32_t>(guard_check);
  LATCH_RETURN_IF_ERROR(Get(root, source, "reattach_guard", &c.reattach_guard, false));
  uint64_t drain_interval = c.drain_interval_ms;
  LATCH_RETURN_IF_ERROR(
      config::GetInRange(root, source, "drain_interval_ms", 0, 10'000, &drain_interval));
  c.drain_interval_ms = static_cast<uint32_t>(drain_interval);
  LATCH_RETURN_IF_ERROR(
      Get(root, source, "cut_established_connections", &c.cut_established_connections, false));
  if (ring < 4096 || ring > (int64_t{1} << 30) || (ring & (ring - 1)) != 0) {
    return Bad(source, root.source(),
               "ring_buffer_bytes must be a power of two from 4096 to 1 GiB");
  }
  if (interval < 10 || interval > 600000) {
    return Bad(source, root.source(), "counters_interval_ms must be 10 to 600000");
  }
  c.ring_buffer_bytes = static_cast<uint32_t>(ring);
  c.counters_interval_ms = static_cast<uint32_t>(interval);
  if (c.instance.empty() || c.instance.find('/') != std::string::npos || c.instance == "." ||
      c.instance == "..") {
    return Bad(source, root.source(), "instance must be a plain name");
  }
  if (const toml::node* res = root.get("resource")) {
    const toml::array* list = res->as_array();
    if (list == nullptr)
      return Bad(source, res->source(), "'resource' must be [[resource]] tables");
    for (const toml::node& n : *list) {
      const toml::table* t = n.as_table();
      if (t == nullptr) return Bad(source, n.source(), "'resource' must be [[resource]] tables");
      LATCH_RETURN_IF_ERROR(ParseResource(*t, source, &c.resources.emplace_back()));
    }
  }
  if (const toml::node* col = root.get("collector")) {
    const toml::table* t = col->as_table();
    if (t == nullptr) return Bad(source, col->source(), "'collector' must be a [collector] table");
    LATCH_RETURN_IF_ERROR(ParseCollector(*t, source, &c.collector));
  }
  if (const toml::node* act = root.get("activity")) {
    const toml::table* t = act->as_table();
    if (t == nullptr) return Bad(source, act->source(), "'activity' must be an [activity] table");
    LATCH_RETURN_IF_ERROR(ParseActivity(*t, source, &c.activity, &c.redaction));
  }
  // Catch duplicate ids and oversized rule sets now, not at apply time.
  std::map<std::pair<uint32_t, std::array<uint8_t, 16>>, latch_cidr_rules> compiled;
  Status s = resource::CompileResources(c.resources, &compiled);
  if (!s.ok()) return Status::InvalidArgument(source + ": " + s.message());
  *out = std::move(c);
  return Status::Ok();
}

Status LoadAgentConfig(const std::string& path, AgentConfig* out) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("cannot read config file " + path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return ParseAgentConfig(text, path, out);
}

std::string ActivityPinDir(const AgentConfig& config) { return config.pin_dir + "/activity"; }

// Fills what the config's [collector] section leaves out from the file
// `latch-agent enrol` wrote; the config's own settings win.
static Status UseEnrolment(AgentConfig* config) {
  CollectorSettings& c = config->collector;
  const std::string path = EnrolmentPath(c.state_dir);
  std::ifstream in(path);
  if (!in) return Status::Ok();  // not enrolled by token: all of it is in the config
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  toml::table t;
  Status parsed = ParseToml(text, path, &t);
  if (!parsed.ok()) {
    return Status::Corruption(parsed.message() + " (written by latch-agent enrol; enrol again)");
  }
  std::string host;
  LATCH_RETURN_IF_ERROR(Get(t, path, "host_id", &host, true));
  if (host != config->host_id) {
    return Status::InvalidArgument(path + " enrolled this agent as '" + host +
                                   "', but host_id is '" + config->host_id +
                                   "': enrol again with a token for '" + config->host_id + "'");
  }
  CollectorSettings enrolled;
  LATCH_RETURN_IF_ERROR(ParseCollectorKeys(t, path, &enrolled));
  if (c.endpoints.empty()) c.endpoints = enrolled.endpoints;
  if (c.server_public_key.empty()) c.server_public_key = enrolled.server_public_key;
  if (c.grant_keys.empty()) c.grant_keys = enrolled.grant_keys;
  if (c.ledger_key.empty()) c.ledger_key = enrolled.ledger_key;
  return Status::Ok();
}

std::string EnrolmentPath(const std::string& state_dir) { return state_dir + "/enrolment.toml"; }

Status ResolveAgentDefaults(AgentConfig* config, CollectorKeys keys) {
  if (config->cgroup.empty()) LATCH_RETURN_IF_ERROR(FindCgroup2Mount(&config->cgroup));
  if (config->pin_dir.empty()) config->pin_dir = "/sys/fs/bpf/latch/" + config->instance;
  config->activity.pin_dir = ActivityPinDir(*config);
  // Capture records this host's tasks only: those the guard guards (issue 16).
  config->activity.scope_cgroup_dir = config->cgroup;
  if (config->collector.enabled && config->collector.state_dir.empty()) {
    config->collector.state_dir = "/var/lib/latch-agent/" + config->instance;
  }
  if (!config->collector.enabled) return Status::Ok();
  LATCH_RETURN_IF_ERROR(UseEnrolment(config));
  if (keys == CollectorKeys::kOptional) return Status::Ok();
  const CollectorSettings& c = config->collector;
  std::string missing;
  if (c.endpoints.empty()) missing += " endpoints";
  if (c.server_public_key.empty()) missing += " server_public_key";
  if (c.grant_keys.empty()) missing += " grant_key";
  if (c.ledger_key.empty()) missing += " ledger_key";
  if (!missing.empty()) {
    return Status::InvalidArgument(
        "[collector] is missing" + missing +
        ": enrol this agent (latch-collector token create on the collector, then latch-agent "
        "enrol here) or set them from latch-collector keys");
  }
  return Status::Ok();
}

}  // namespace latch::agent
