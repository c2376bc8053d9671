// A host's resources as the collector signs them and the agent reads them
// back (issue 16): what goes in comes out, and the difference between a
// local list and the signed one is said by resource.
#include "schemas/host_policy.h"

#include <capnp/message.h>
#include <gtest/gtest.h>

#include "agent/identity_namer.h"

namespace latch::agent {
namespace {

resource::Resource Make(uint32_t id, const char* dest, const char* ports) {
  resource::Resource r;
  r.id = id;
  r.name = "r" + std::to_string(id);
  EXPECT_TRUE(resource::ParseDestination(dest, &r).ok());
  EXPECT_TRUE(resource::ParsePortRange(ports, &r.port_lo, &r.port_hi).ok());
  return r;
}

TEST(HostPolicy, ResourcesComeBackAsTheyWent) {
  std::vector<resource::Resource> in = {Make(1, "10.0.0.0/8", "8080"), Make(2, "local", "*"),
                                        Make(3, "2001:db8::/32", "53")};
  in[2].protocol = resource::Protocol::kUdp;
  in[2].mode = resource::Mode::kAudit;
  capnp::MallocMessageBuilder m;
  auto hp = m.initRoot<schema::HostPolicy>();
  auto list = hp.initResources(static_cast<unsigned>(in.size()));
  for (unsigned i = 0; i < in.size(); ++i) resource::ResourceToSchema(in[i], list[i]);
  std::vector<resource::Resource> out;
  ASSERT_TRUE(resource::ResourcesFromPolicy(hp.asReader(), &out).ok());
  ASSERT_EQ(out.size(), 3u);
  EXPECT_TRUE(resource::SameEnforcement(in, out));
  EXPECT_TRUE(out[1].local);
  EXPECT_EQ(out[0].name, "r1");
  EXPECT_EQ(resource::DescribeDifference(in, out), "");

  list[1].setId(1);  // two resources with one id
  EXPECT_FALSE(resource::ResourcesFromPolicy(hp.asReader(), &out).ok());
}

// The case: the agent configured 8081, the policy says 8080.
TEST(HostPolicy, ADifferenceIsSaidByResource) {
  std::vector<resource::Resource> local = {Make(1, "127.0.0.1", "8081"), Make(4, "10.0.0.1", "22")};
  std::vector<resource::Resource> signed_list = {Make(1, "127.0.0.1", "8080"),
                                                 Make(5, "10.0.0.2", "22")};
  EXPECT_FALSE(resource::SameEnforcement(local, signed_list));
  EXPECT_EQ(resource::DescribeDifference(local, signed_list),
            "resource 1: local ports 8081, signed ports 8080; resource 4: only local; "
            "resource 5: only signed");
  // Names and order do not matter; what the kernel does does.
  std::vector<resource::Resource> renamed = {signed_list[1], signed_list[0]};
  renamed[0].name = "other";
  EXPECT_TRUE(resource::SameEnforcement(signed_list, renamed));
}

TEST(IdentityNamer, ACgroupIsTheMoreSpecificClaim) {
  IdentityNamer namer;
  namer.Set({{{Principal::Kind::kUid, 4000}, "tess"},
             {{Principal::Kind::kCgroup, 77}, "batch"},
             {{Principal::Kind::kUid, 4000}, "tess-again"}});
  EXPECT_EQ(namer.NameOf(4000, 1), "tess");
  EXPECT_EQ(namer.NameOf(4000, 77), "batch");
  EXPECT_EQ(namer.NameOf(4001, 1), "");
  namer.Set({});
  EXPECT_EQ(namer.NameOf(4000, 77), "");
}

}  // namespace
}  // namespace latch::agent
