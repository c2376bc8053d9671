#include "agent/event_record.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>

#include "schemas/event.capnp.h"

namespace latch::agent {

std::string EncodeDecisionEvent(const latch_decision_event& e) {
  capnp::MallocMessageBuilder message;
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
  auto words = capnp::canonicalize(r.asReader());
  auto bytes = words.asBytes();
  return {reinterpret_cast<const char*>(bytes.begin()), bytes.size()};
}

Status DecodeDecisionEvent(const std::string& bytes, latch_decision_event* out) {
  if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0) {
    return Status::Corruption("decision event is not whole Cap'n Proto words");
  }
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), bytes.data(), bytes.size());
  try {
    capnp::ReaderOptions options;
    options.traversalLimitInWords = words.size() * 4 + 16;
    kj::ArrayPtr<const capnp::word> segments[1] = {words.asPtr()};
    capnp::SegmentArrayMessageReader message(kj::arrayPtr(segments, 1), options);
    if (!message.isCanonical()) return Status::Corruption("decision event is not canonical");
    auto r = message.getRoot<schema::DecisionEvent>();
    latch_decision_event e{};
    e.ktime_boot_ns = r.getKtimeBootNs();
    e.pid = r.getPid();
    e.tgid = r.getTgid();
    e.uid = r.getUid();
    e.gid = r.getGid();
    e.cgroup_id = r.getCgroupId();
    auto comm = r.getComm();
    auto dest = r.getDestination();
    if (comm.size() > sizeof(e.comm) || dest.size() != sizeof(e.addr)) {
      return Status::Corruption("decision event has a bad comm or destination length");
    }
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
  } catch (const kj::Exception& ex) {
    return Status::Corruption(std::string("decision event does not decode: ") +
                              ex.getDescription().cStr());
  }
  return Status::Ok();
}

}  // namespace latch::agent
