#include "schemas/host_policy.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

namespace latch::resource {
namespace {

// The fields the kernel acts on, in one comparable shape.
struct Enforced {
  std::vector<std::pair<std::array<uint8_t, 16>, uint32_t>> destinations;  // sorted
  Protocol protocol;
  uint16_t port_lo, port_hi;
  Mode mode;
  bool local;
  bool operator==(const Enforced&) const = default;
};

Enforced EnforcedOf(const Resource& r) {
  Enforced e{{}, r.protocol, r.port_lo, r.port_hi, r.mode, r.local};
  for (const Cidr& c : r.destinations) e.destinations.emplace_back(c.addr, c.prefixlen);
  std::sort(e.destinations.begin(), e.destinations.end());
  e.destinations.erase(std::unique(e.destinations.begin(), e.destinations.end()),
                       e.destinations.end());
  return e;
}

std::map<uint32_t, const Resource*> ById(const std::vector<Resource>& list) {
  std::map<uint32_t, const Resource*> m;
  for (const Resource& r : list) m[r.id] = &r;
  return m;
}

std::string Ports(const Resource& r) {
  if (r.port_lo == 0 && r.port_hi == 65535) return "*";
  if (r.port_lo == r.port_hi) return std::to_string(r.port_lo);
  return std::to_string(r.port_lo) + "-" + std::to_string(r.port_hi);
}

std::string Destinations(const Resource& r) {
  std::string out;
  for (const Cidr& c : r.destinations) out += (out.empty() ? "" : ",") + c.ToString();
  return out;
}

}  // namespace

void ResourceToSchema(const Resource& r, schema::Resource::Builder out) {
  out.setId(r.id);
  out.setName(r.name);
  auto dests = out.initDestinations(static_cast<unsigned>(r.destinations.size()));
  for (unsigned i = 0; i < r.destinations.size(); ++i) {
    dests[i].setAddress(kj::arrayPtr(r.destinations[i].addr.data(), 16));
    dests[i].setPrefixLength(static_cast<uint8_t>(r.destinations[i].prefixlen));
  }
  out.setProtocol(r.protocol == Protocol::kTcp   ? schema::Protocol::TCP
                  : r.protocol == Protocol::kUdp ? schema::Protocol::UDP
                                                 : schema::Protocol::ANY);
  out.setPortLow(r.port_lo);
  out.setPortHigh(r.port_hi);
  out.setMode(r.mode == Mode::kAudit ? schema::Mode::AUDIT : schema::Mode::ENFORCE);
  out.setLocal(r.local);
}

Status ResourceFromSchema(schema::Resource::Reader in, Resource* out) {
  Resource r;
  r.id = in.getId();
  if (r.id == 0) return Status::InvalidArgument("a resource with id 0");
  r.name = in.getName();
  const std::string which = "resource " + std::to_string(r.id);
  for (auto d : in.getDestinations()) {
    Cidr c;
    if (d.getAddress().size() != 16) {
      return Status::InvalidArgument(which + ": a destination address is not 16 bytes");
    }
    std::memcpy(c.addr.data(), d.getAddress().begin(), 16);
    c.prefixlen = d.getPrefixLength();
    if (c.prefixlen > 128) return Status::InvalidArgument(which + ": a prefix over 128");
    Cidr network = c;  // host bits must be zero, as Cidr::Parse insists
    for (uint32_t bit = c.prefixlen; bit < 128; ++bit) {
      network.addr[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
    }
    if (network.addr != c.addr) {
      return Status::InvalidArgument(which + ": a destination with host bits set");
    }
    r.destinations.push_back(c);
  }
  switch (in.getProtocol()) {
    case schema::Protocol::ANY:
      r.protocol = Protocol::kAny;
      break;
    case schema::Protocol::TCP:
      r.protocol = Protocol::kTcp;
      break;
    case schema::Protocol::UDP:
      r.protocol = Protocol::kUdp;
      break;
    default:
      return Status::InvalidArgument(which + ": an unknown protocol");
  }
  switch (in.getMode()) {
    case schema::Mode::ENFORCE:
      r.mode = Mode::kEnforce;
      break;
    case schema::Mode::AUDIT:
      r.mode = Mode::kAudit;
      break;
    default:
      return Status::InvalidArgument(which + ": an unknown mode");
  }
  r.port_lo = in.getPortLow();
  r.port_hi = in.getPortHigh();
  if (r.port_lo > r.port_hi) return Status::InvalidArgument(which + ": ports upside down");
  r.local = in.getLocal();
  *out = std::move(r);
  return Status::Ok();
}

Status ResourcesFromPolicy(schema::HostPolicy::Reader policy, std::vector<Resource>* out) {
  std::vector<Resource> list;
  std::set<uint32_t> ids;
  for (auto in : policy.getResources()) {
    Resource r;
    LATCH_RETURN_IF_ERROR(ResourceFromSchema(in, &r));
    if (!ids.insert(r.id).second) {
      return Status::InvalidArgument("resource id " + std::to_string(r.id) + " twice");
    }
    list.push_back(std::move(r));
  }
  *out = std::move(list);
  return Status::Ok();
}

bool SameEnforcement(const std::vector<Resource>& a, const std::vector<Resource>& b) {
  return DescribeDifference(a, b).empty();
}

std::string DescribeDifference(const std::vector<Resource>& local,
                               const std::vector<Resource>& signed_list) {
  std::map<uint32_t, const Resource*> mine = ById(local), theirs = ById(signed_list);
  std::set<uint32_t> ids;
  for (const auto& [id, r] : mine) ids.insert(id);
  for (const auto& [id, r] : theirs) ids.insert(id);
  std::string out;
  auto add = [&](const std::string& line) { out += (out.empty() ? "" : "; ") + line; };
  for (uint32_t id : ids) {
    const std::string which = "resource " + std::to_string(id);
    auto m = mine.find(id), t = theirs.find(id);
    if (t == theirs.end()) {
      add(which + ": only local");
    } else if (m == mine.end()) {
      add(which + ": only signed");
    } else if (!(EnforcedOf(*m->second) == EnforcedOf(*t->second))) {
      const Resource& l = *m->second;
      const Resource& s = *t->second;
      std::string d = which + ":";
      if (Ports(l) != Ports(s)) d += " local ports " + Ports(l) + ", signed ports " + Ports(s);
      if (EnforcedOf(l).destinations != EnforcedOf(s).destinations) {
        d += " local destinations " + Destinations(l) + ", signed " + Destinations(s);
      }
      if (l.protocol != s.protocol) d += " protocols differ";
      if (l.mode != s.mode) d += " modes differ";
      if (l.local != s.local) d += " \"local\" differs";
      add(d);
    }
  }
  return out;
}

}  // namespace latch::resource
