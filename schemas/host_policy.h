// A host's policy as the collector signs it (HostPolicy, grant.capnp) and as
// the guard enforces it: resources as resource::Resource, identities as the
// principals that name who holds a uid or cgroup on the host. The collector
// writes it from its policy; the agent reads it from a verified grant set,
// so reading checks everything the kernel's maps and the daemon rely on.
#pragma once

#include <string>
#include <vector>

#include "lib/status/status.h"
#include "schemas/grant.capnp.h"
#include "schemas/resource.h"

namespace latch::resource {

void ResourceToSchema(const Resource& r, schema::Resource::Builder out);
// InvalidArgument for what the guard could not hold: id 0, an address that
// is not 16 bytes, a prefix over 128 or with host bits set, ports upside down.
Status ResourceFromSchema(schema::Resource::Reader in, Resource* out);
// Every resource of `policy`, in its order; duplicate ids are refused too.
Status ResourcesFromPolicy(schema::HostPolicy::Reader policy, std::vector<Resource>* out);

// True iff both lists protect the same destinations, ports and protocols in
// the same modes under the same ids, whatever their order and names.
bool SameEnforcement(const std::vector<Resource>& a, const std::vector<Resource>& b);
// What differs, by resource id, for a log line and an alarm: e.g.
// "resource 1: local ports 8081, signed ports 8080; resource 3: only local".
std::string DescribeDifference(const std::vector<Resource>& local,
                               const std::vector<Resource>& signed_list);

}  // namespace latch::resource
