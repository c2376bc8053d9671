// Protected resources as the guard enforces them, and their compilation into
// the kernel's LPM trie entries.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "bpf/guard_abi.h"
#include "lib/status/status.h"
#include "schemas/cidr.h"

namespace latch::resource {

enum class Mode : uint8_t { kEnforce = LATCH_MODE_ENFORCE, kAudit = LATCH_MODE_AUDIT };
enum class Protocol : uint8_t { kAny = LATCH_PROTO_ANY, kTcp = 6, kUdp = 17 };

Status ParseMode(std::string_view text, Mode* out);          // "enforce" | "audit"
Status ParseProtocol(std::string_view text, Protocol* out);  // "tcp" | "udp" | "any"
// "5432", "8000-8100", or "*" (all ports).
Status ParsePortRange(std::string_view text, uint16_t* lo, uint16_t* hi);

struct Resource;
// One entry of a resource's destinations, added to `r`: a CIDR ("10.0.0.0/8",
// "fd00::5"), or "local" (this host: every address it has or will have).
Status ParseDestination(std::string_view text, Resource* r);

struct Resource {
  uint32_t id = 0;  // non-zero, unique: what grants name
  std::string name;
  std::vector<Cidr> destinations;
  Protocol protocol = Protocol::kAny;
  uint16_t port_lo = 0;
  uint16_t port_hi = 65535;
  Mode mode = Mode::kEnforce;
  // Destination "local": every address of this host, current and future. Its
  // loopback addresses are among `destinations`; the rest are told by the
  // kernel at the packet (see LATCH_LOOPBACK_IFINDEX in guard_abi.h).
  bool local = false;
};

// The trie contents for a set of resources: one entry per distinct CIDR,
// holding its own rules and those of every CIDR that contains it (a trie
// lookup only returns the longest match), enforced rules first, then by
// specificity (see resource.cc). InvalidArgument on duplicate ids,
// id 0, or more rules on one CIDR than the kernel entry holds.
Status CompileResources(
    const std::vector<Resource>& resources,
    std::map<std::pair<uint32_t, std::array<uint8_t, 16>>, latch_cidr_rules>* out);

// The rules for "local" (the resources naming it), in the kernel's order:
// enforced first. InvalidArgument if more than one kernel entry holds.
Status CompileLocalRules(const std::vector<Resource>& resources, latch_cidr_rules* out);

// The loopback CIDRs "local" stands for in the trie: 127.0.0.0/8 and ::1.
std::vector<Cidr> LoopbackCidrs();

// Resources that name a single loopback address (127.0.0.1/32, ::1): a
// service listening on 0.0.0.0 or [::] answers on every address of this host,
// so such a resource guards one door of many. One line per resource, saying
// so; empty when there is nothing to warn about.
std::vector<std::string> SingleLoopbackWarnings(const std::vector<Resource>& resources);

}  // namespace latch::resource
