#include "schemas/resource.h"

#include <algorithm>
#include <charconv>
#include <set>

namespace latch::resource {

Status ParseMode(std::string_view text, Mode* out) {
  if (text == "enforce")
    *out = Mode::kEnforce;
  else if (text == "audit")
    *out = Mode::kAudit;
  else
    return Status::InvalidArgument("unknown mode '" + std::string(text) + "' (enforce or audit)");
  return Status::Ok();
}

Status ParseProtocol(std::string_view text, Protocol* out) {
  if (text == "tcp")
    *out = Protocol::kTcp;
  else if (text == "udp")
    *out = Protocol::kUdp;
  else if (text == "any")
    *out = Protocol::kAny;
  else
    return Status::InvalidArgument("unknown protocol '" + std::string(text) +
                                   "' (tcp, udp or any)");
  return Status::Ok();
}

Status ParsePortRange(std::string_view text, uint16_t* lo, uint16_t* hi) {
  auto bad = [&] { return Status::InvalidArgument("bad port range '" + std::string(text) + "'"); };
  if (text == "*") {
    *lo = 0;
    *hi = 65535;
    return Status::Ok();
  }
  auto parse = [](std::string_view s, uint16_t* v) {
    unsigned n = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size() || n > 65535) return false;
    *v = static_cast<uint16_t>(n);
    return true;
  };
  size_t dash = text.find('-');
  if (dash == std::string_view::npos) {
    if (!parse(text, lo)) return bad();
    *hi = *lo;
    return Status::Ok();
  }
  if (!parse(text.substr(0, dash), lo) || !parse(text.substr(dash + 1), hi) || *lo > *hi)
    return bad();
  return Status::Ok();
}

Status ParseDestination(std::string_view text, Resource* r) {
  if (text == "local") {
    // Its loopback addresses go in the trie; the rest are told at the packet.
    r->local = true;
    for (const Cidr& loopback : LoopbackCidrs()) r->destinations.push_back(loopback);
    return Status::Ok();
  }
  Cidr c;
  Status s = Cidr::Parse(text, &c);
  if (!s.ok()) {
    return Status::InvalidArgument(s.message() +
                                   " (a destination is a CIDR, or \"local\" for every address of "
                                   "this host)");
  }
  r->destinations.push_back(c);
  return Status::Ok();
}

Status CompileResources(
    const std::vector<Resource>& resources,
    std::map<std::pair<uint32_t, std::array<uint8_t, 16>>, latch_cidr_rules>* out) {
  struct Entry {
    Cidr cidr;
    latch_rule rule;
  };
  std::vector<Entry> entries;
  std::set<uint32_t> ids;
  for (const Resource& r : resources) {
    if (r.id == 0) return Status::InvalidArgument("resource '" + r.name + "' has id 0");
    if (!ids.insert(r.id).second) {
      return Status::InvalidArgument("resource id " + std::to_string(r.id) + " is used twice");
    }
    if (r.destinations.empty()) {
      return Status::InvalidArgument("resource '" + r.name + "' has no destinations");
    }
    for (const Cidr& c : r.destinations) {
      latch_rule rule{};
      rule.resource_id = r.id;
      rule.port_lo = r.port_lo;
      rule.port_hi = r.port_hi;
      rule.protocol = static_cast<uint8_t>(r.protocol);
      rule.mode = static_cast<uint8_t>(r.mode);
      entries.push_back({c, rule});
    }
  }
  out->clear();
  for (const Entry& e : entries) {
    auto key = std::make_pair(e.cidr.prefixlen, e.cidr.addr);
    if (out->count(key) != 0) continue;
    latch_cidr_rules rules{};
    // Rules of this CIDR and of every CIDR containing it. The kernel takes the
    // first rule that matches, so the order is the policy: enforced rules
    // before audit rules (a destination an enforced resource names is
    // enforced, whatever narrower audit resource also names it), and within
    // a mode the most specific CIDR first (its resource is the one a grant
    // must name).
    std::vector<const Entry*> covering;
    for (const Entry& other : entries) {
      if (other.cidr.Contains(e.cidr)) covering.push_back(&other);
    }
    std::stable_sort(covering.begin(), covering.end(), [](const Entry* a, const Entry* b) {
      bool a_enforced = a->rule.mode == LATCH_MODE_ENFORCE;
      bool b_enforced = b->rule.mode == LATCH_MODE_ENFORCE;
      if (a_enforced != b_enforced) return a_enforced;
      return a->cidr.prefixlen > b->cidr.prefixlen;
    });
    for (const Entry* c : covering) {
      if (rules.count == LATCH_MAX_RULES_PER_CIDR) {
        return Status::InvalidArgument("more than " + std::to_string(LATCH_MAX_RULES_PER_CIDR) +
                                       " resource rules apply to " + e.cidr.ToString());
      }
      rules.rules[rules.count++] = c->rule;
    }
    (*out)[key] = rules;
  }
  return Status::Ok();
}

std::vector<Cidr> LoopbackCidrs() {
  std::vector<Cidr> out(2);
  (void)Cidr::Parse("127.0.0.0/8", &out[0]);
  (void)Cidr::Parse("::1", &out[1]);
  return out;
}

Status CompileLocalRules(const std::vector<Resource>& resources, latch_cidr_rules* out) {
  *out = latch_cidr_rules{};
  std::vector<const Resource*> local;
  for (const Resource& r : resources) {
    if (r.local) local.push_back(&r);
  }
  std::stable_sort(local.begin(), local.end(), [](const Resource* a, const Resource* b) {
    return a->mode == Mode::kEnforce && b->mode != Mode::kEnforce;
  });
  if (local.size() > LATCH_MAX_RULES_PER_CIDR) {
    return Status::InvalidArgument("more than " + std::to_string(LATCH_MAX_RULES_PER_CIDR) +
                                   " resources name \"local\"");
  }
  for (const Resource* r : local) {
    latch_rule& rule = out->rules[out->count++];
    rule.resource_id = r->id;
    rule.port_lo = r->port_lo;
    rule.port_hi = r->port_hi;
    rule.protocol = static_cast<uint8_t>(r->protocol);
    rule.mode = static_cast<uint8_t>(r->mode);
  }
  return Status::Ok();
}

std::vector<std::string> SingleLoopbackWarnings(const std::vector<Resource>& resources) {
  Cidr loopback4, loopback6;
  (void)Cidr::Parse("127.0.0.0/8", &loopback4);
  (void)Cidr::Parse("::1", &loopback6);
  std::vector<std::string> out;
  for (const Resource& r : resources) {
    // Only loopback destinations, and not the whole of 127.0.0.0/8: a single
    // loopback address (or two), the common mistake.
    bool all_loopback = !r.destinations.empty();
    bool covers_loopback4 = false;
    const Cidr* single = nullptr;
    for (const Cidr& c : r.destinations) {
      bool loopback = loopback4.Contains(c) || loopback6.Contains(c);
      all_loopback = all_loopback && loopback;
      covers_loopback4 = covers_loopback4 || c.Contains(loopback4);
      if (loopback && c.prefixlen == 128 && single == nullptr) single = &c;
    }
    if (r.local || !all_loopback || covers_loopback4 || single == nullptr) continue;
    out.push_back("resource '" + r.name + "' names the single loopback address " +
                  single->ToString() +
                  ": a service listening on 0.0.0.0 or [::] also answers on the rest of "
                  "127.0.0.0/8, ::1 and this host's own addresses; destinations = [\"local\"] "
                  "names them all");
  }
  return out;
}

}  // namespace latch::resource
