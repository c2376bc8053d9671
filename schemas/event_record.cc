#include "schemas/event_record.h"

#include <capnp/message.h>

#include <cstring>

#include "schemas/canonical.h"
#include "schemas/event.capnp.h"

namespace latch::record {

std::string EncodeDecisionEvent(const latch_decision_event& e, std::string_view identity) {
  // A decision event is about 20 words; the builder's default first segment
  // (1,024 words, allocated and zeroed) cost more than the rest of the
  // agent's per-record work (issue 13.10).
  capnp::MallocMessageBuilder message(32);
  auto r = message.initRoot<schema::DecisionEvent>();
  r.setKtimeBootNs(e.ktime_boot_ns);
  r.setPid(e.pid);
  r.setTgid(e.tgid);
  r.setUid(e.uid);
  r.setGid(e.gid);
  r.setCgroupId(e.cgroup_id);
  size_t comm_len = strnlen(e.comm, sizeof(e.comm));
  r.setComm(kj::arrayPtr(reinterpret_cast<const kj::byte*>(e.comm), comm_len));
  r.setFamily(e.family);
  r.setProtocol(e.protocol);
  r.setDestination(kj::arrayPtr(e.addr, sizeof(e.addr)));
  r.setPort(e.port);
  r.setResourceId(e.resource_id);
  r.setGrantId(e.grant_id);
  r.setVerdict(static_cast<schema::Verdict>(e.verdict));
  r.setHook(static_cast<schema::Hook>(e.hook));
  if (!identity.empty()) r.setIdentity(capnp::Text::Reader(identity.data(), identity.size()));
  return schema::CanonicalBytes(r.asReader());
}

Status DecodeDecisionEvent(const std::string& bytes, latch_decision_event* out,
                           std::string* identity) {
  return schema::ReadCanonical<schema::DecisionEvent>(
      bytes, "decision event", [&](schema::DecisionEvent::Reader r) {
        latch_decision_event e{};
        auto comm = r.getComm();
        auto dest = r.getDestination();
        if (comm.size() > sizeof(e.comm) || dest.size() != sizeof(e.addr)) {
          return Status::Corruption("decision event has a bad comm or destination length");
        }
        e.ktime_boot_ns = r.getKtimeBootNs();
        e.pid = r.getPid();
        e.tgid = r.getTgid();
        e.uid = r.getUid();
        e.gid = r.getGid();
        e.cgroup_id = r.getCgroupId();
        std::memcpy(e.comm, comm.begin(), comm.size());
        std::memcpy(e.addr, dest.begin(), dest.size());
        e.family = r.getFamily();
        e.protocol = r.getProtocol();
        e.port = r.getPort();
        e.resource_id = r.getResourceId();
        e.grant_id = r.getGrantId();
        e.verdict = static_cast<uint8_t>(r.getVerdict());
        e.hook = static_cast<uint8_t>(r.getHook());
        *out = e;
        if (identity != nullptr) *identity = r.getIdentity();
        return Status::Ok();
      });
}

}  // namespace latch::record
