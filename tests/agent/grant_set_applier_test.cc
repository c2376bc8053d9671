// GrantSetApplier against an in-memory Enforcer: only correctly signed sets
// and grants for this host reach it, and a new set replaces the old without
// a gap.
#include "agent/grant_set_applier.h"

#include <capnp/message.h>
#include <gtest/gtest.h>

#include <functional>
#include <map>

#include "schemas/canonical.h"
#include "schemas/grant_signature.h"
#include "schemas/host_policy.h"

namespace latch::agent {
namespace {

// Records every call, so tests can check the order of writes and removals.
class FakeEnforcer : public Enforcer {
 public:
  Status SetResources(const std::vector<resource::Resource>& resources) override {
    std::string line = "resources";
    for (const auto& r : resources) line += " " + std::to_string(r.id);
    log.push_back(line);
    return Status::Ok();
  }
  Status ApplyGrant(const Grant& g) override {
    log.push_back("apply " + std::to_string(g.grant_id));
    held[{g.principal.id, g.resource_id}] = g;
    return Status::Ok();
  }
  Status RevokeGrant(uint64_t id) override {
    log.push_back("revoke " + std::to_string(id));
    bool found = false;
    for (auto it = held.begin(); it != held.end();) {
      if (it->second.grant_id == id) {
        it = held.erase(it);
        found = true;
      } else {
        ++it;
      }
    }
    return found ? Status::Ok() : Status::NotFound("no such grant");
  }
  Status ListGrants(std::vector<KernelGrant>* out) override {
    out->clear();
    for (auto& [k, g] : held) out->push_back({g.grant_id, g.principal, g.resource_id, 0, 0});
    return Status::Ok();
  }
  Status ListResourceEntries(std::vector<std::pair<resource::Cidr, latch_cidr_rules>>*) override {
    return Status::Ok();
  }
  std::map<std::pair<uint64_t, uint32_t>, Grant> held;
  std::vector<std::string> log;
};

class GrantSetApplierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(tlog::NoteSigner::Generate("test/grants", &key_).ok());
    ASSERT_TRUE(tlog::NoteSigner::Generate("test/grants", &other_key_).ok());
  }
  struct G {
    uint64_t id;
    uint32_t uid;
    uint32_t resource;
    std::string host = "host-a";
  };
  // A signed set; `set_key` signs the set, `grant_key` the grants.
  std::string MakeSet(uint64_t version, const std::vector<G>& grants,
                      const tlog::NoteSigner& set_key, const tlog::NoteSigner& grant_key,
                      const std::string& host = "host-a",
                      const std::function<void(schema::GrantSet::Builder)>& more = nullptr) {
    capnp::MallocMessageBuilder m;
    auto set = m.initRoot<schema::GrantSet>();
    set.setHostId(host);
    set.setVersion(version);
    if (more) more(set);
    auto list = set.initGrants(static_cast<unsigned>(grants.size()));
    for (unsigned i = 0; i < grants.size(); ++i) {
      capnp::MallocMessageBuilder gm;
      auto g = gm.initRoot<schema::Grant>();
      g.setId(grants[i].id);
      g.initPrincipals(1)[0].setUid(grants[i].uid);
      g.initResourceIds(1).set(0, grants[i].resource);
      g.initHostIds(1).set(0, grants[i].host);
      g.setNotBeforeUnixNs(1);
      g.setNotAfterUnixNs(int64_t{1} << 62);
      EXPECT_TRUE(schema::SignGrant(grant_key, g.asReader(), list[i]).ok());
    }
    capnp::MallocMessageBuilder sm;
    auto signed_set = sm.initRoot<schema::SignedGrantSet>();
    EXPECT_TRUE(schema::SignGrantSet(set_key, set.asReader(), signed_set).ok());
    return schema::CanonicalBytes(signed_set.asReader());
  }
  AppliedReport Apply(GrantSetApplier& a, const std::string& bytes) {
    AppliedReport r;
    EXPECT_TRUE(schema::ReadCanonical<schema::SignedGrantSet>(bytes, "set", [&](auto set) {
                  return a.Apply(set, &r);
                }).ok());
    return r;
  }
  tlog::NoteSigner key_, other_key_;
  FakeEnforcer enforcer_;
};

TEST_F(GrantSetApplierTest, NewSetIsWrittenBeforeTheOldIsRemoved) {
  GrantSetApplier a(enforcer_, key_.verifier(), "host-a", "/sys/fs/cgroup", 0);
  AppliedReport r = Apply(a, MakeSet(5, {{1, 1000, 9}, {2, 1001, 9}}, key_, key_));
  EXPECT_TRUE(r.rejected_set.empty()) << r.rejected_set;
  EXPECT_EQ(r.version, 5u);
  EXPECT_EQ(r.grant_ids, (std::vector<uint64_t>{1, 2}));
  enforcer_.log.clear();
  // Grant 2 stays, 1 goes, 3 comes: 2 and 3 are written before 1 is removed.
  r = Apply(a, MakeSet(6, {{2, 1001, 9}, {3, 1002, 9}}, key_, key_));
  EXPECT_EQ(enforcer_.log, (std::vector<std::string>{"apply 2", "apply 3", "revoke 1"}));
  EXPECT_EQ(r.grant_ids, (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(r.removed_grant_ids, (std::vector<uint64_t>{1}));  // the revocation's application
  EXPECT_EQ(a.version(), 6u);
}

TEST_F(GrantSetApplierTest, ForgedOldOrForeignSetsNeverReachTheKernel) {
  GrantSetApplier a(enforcer_, key_.verifier(), "host-a", "/sys/fs/cgroup", 5);
  AppliedReport r = Apply(a, MakeSet(9, {{1, 1000, 9}}, other_key_, other_key_));
  EXPECT_NE(r.rejected_set.find("another key"), std::string::npos) << r.rejected_set;
  r = Apply(a, MakeSet(9, {{1, 1000, 9}}, key_, key_, "host-b"));
  EXPECT_NE(r.rejected_set.find("host-b"), std::string::npos) << r.rejected_set;
  r = Apply(a, MakeSet(4, {{1, 1000, 9}}, key_, key_));
  EXPECT_NE(r.rejected_set.find("older"), std::string::npos) << r.rejected_set;
  // A set signed by the right key carrying a grant signed by another: that
  // grant is refused, the others apply.
  std::string tampered = MakeSet(10, {{7, 1000, 9}}, key_, other_key_);
  r = Apply(a, tampered);
  EXPECT_TRUE(r.rejected_set.empty());
  ASSERT_EQ(r.rejected.size(), 1u);
  EXPECT_TRUE(enforcer_.held.empty());
  EXPECT_EQ(std::count(enforcer_.log.begin(), enforcer_.log.end(), "apply 7"), 0);
  // A grant naming another host inside this host's set is refused too.
  r = Apply(a, MakeSet(11, {{8, 1000, 9, "host-b"}}, key_, key_));
  ASSERT_EQ(r.rejected.size(), 1u);
  EXPECT_EQ(r.rejected[0].first, 8u);
  EXPECT_TRUE(enforcer_.held.empty());
}

// During a grant key rotation the agent trusts the old key and the new one:
// a set signed by the new key keeps the grants the old key signed, and a key
// it was not given stays refused.
TEST_F(GrantSetApplierTest, DuringAKeyRotationOldGrantsInANewSetApply) {
  tlog::NoteSigner stranger;
  ASSERT_TRUE(tlog::NoteSigner::Generate("test/grants", &stranger).ok());
  GrantSetApplier a(enforcer_, schema::GrantKeys({key_.verifier(), other_key_.verifier()}),
                    "host-a", "/sys/fs/cgroup", 0);
  AppliedReport r = Apply(a, MakeSet(1, {{1, 1000, 9}}, key_, key_));  // before the switch
  EXPECT_TRUE(r.rejected_set.empty()) << r.rejected_set;
  r = Apply(a, MakeSet(2, {{1, 1000, 9}}, other_key_, key_));  // after: new set, old grant
  EXPECT_TRUE(r.rejected_set.empty()) << r.rejected_set;
  EXPECT_TRUE(r.rejected.empty());
  EXPECT_EQ(r.grant_ids, (std::vector<uint64_t>{1}));
  EXPECT_EQ(enforcer_.held.size(), 1u);
  r = Apply(a, MakeSet(3, {{1, 1000, 9}}, stranger, key_));
  EXPECT_NE(r.rejected_set.find("another key"), std::string::npos) << r.rejected_set;
  r = Apply(a, MakeSet(4, {{1, 1000, 9}, {2, 1000, 9}}, other_key_, stranger));
  ASSERT_EQ(r.rejected.size(), 2u);  // both grants signed by a key it was not given
  // Once the old key is dropped from the list, its grants are refused.
  GrantSetApplier after(enforcer_, other_key_.verifier(), "host-a", "/sys/fs/cgroup", 4);
  r = Apply(after, MakeSet(5, {{1, 1000, 9}}, other_key_, key_));
  EXPECT_EQ(r.rejected.size(), 1u);
}

// A host policy in a set (issue 16): its resources reach the kernel after
// the set's grants and before stale grants go; identities are resolved on
// this host (a user it does not have is left out).
TEST_F(GrantSetApplierTest, AHostPolicysResourcesAreWrittenAfterItsGrants) {
  GrantSetApplier a(enforcer_, key_.verifier(), "host-a", "/sys/fs/cgroup", 0);
  ASSERT_TRUE(Apply(a, MakeSet(1, {{1, 1000, 9}}, key_, key_)).rejected_set.empty());
  enforcer_.log.clear();
  auto policy = [](schema::GrantSet::Builder set) {
    auto hp = set.initHostPolicy();
    resource::Resource web;
    web.id = 9;
    web.name = "web";
    ASSERT_TRUE(resource::ParseDestination("10.1.2.3", &web).ok());
    web.port_lo = web.port_hi = 8080;
    resource::ResourceToSchema(web, hp.initResources(1)[0]);
    auto ids = hp.initIdentities(3);
    ids[0].setIdentity("tess");
    ids[0].initPrincipal().setUid(4000);
    ids[1].setIdentity("ghost");
    ids[1].initPrincipal().setUserName("no-such-user-on-this-host");
    ids[2].setIdentity("root-user");
    ids[2].initPrincipal().setUserName("root");
    hp.setSinceNs(77);
  };
  AppliedReport r = Apply(a, MakeSet(2, {{2, 1001, 9}}, key_, key_, "host-a", policy));
  ASSERT_TRUE(r.rejected_set.empty()) << r.rejected_set;
  EXPECT_EQ(enforcer_.log, (std::vector<std::string>{"apply 2", "resources 9", "revoke 1"}));
  ASSERT_TRUE(r.host_policy.has_value());
  ASSERT_EQ(r.host_policy->resources.size(), 1u);
  EXPECT_EQ(r.host_policy->resources[0].port_lo, 8080);
  EXPECT_EQ(r.host_policy->since_ns, 77);
  ASSERT_EQ(r.host_policy->holders.size(), 2u);  // ghost has no user here
  EXPECT_EQ(r.host_policy->holders[0].second, "tess");
  EXPECT_EQ(r.host_policy->holders[0].first.id, 4000u);
  EXPECT_EQ(r.host_policy->holders[1].second, "root-user");
  EXPECT_EQ(r.host_policy->holders[1].first.id, 0u);

  // The same set again changes nothing and reports no new policy.
  r = Apply(a, MakeSet(2, {{2, 1001, 9}}, key_, key_, "host-a", policy));
  EXPECT_FALSE(r.host_policy.has_value());
}

// A host policy the kernel could not hold refuses the whole set before
// anything is written; a kept set is checked like a received one.
TEST_F(GrantSetApplierTest, ABadHostPolicyRefusesTheSet) {
  GrantSetApplier a(enforcer_, key_.verifier(), "host-a", "/sys/fs/cgroup", 0);
  for (auto bad : std::vector<std::function<void(schema::Resource::Builder)>>{
           [](schema::Resource::Builder r) { r.setId(0); },
           [](schema::Resource::Builder r) {
             r.setId(3);
             auto d = r.initDestinations(1)[0];
             d.setAddress(kj::heapArray<kj::byte>(4));  // not 16 bytes
           },
           [](schema::Resource::Builder r) {
             r.setId(3);
             auto d = r.initDestinations(1)[0];
             d.setAddress(kj::heapArray<kj::byte>(16));
             d.setPrefixLength(200);
           },
           [](schema::Resource::Builder r) {
             r.setId(3);
             r.setPortLow(9000);
             r.setPortHigh(80);
           }}) {
    enforcer_.log.clear();
    AppliedReport r = Apply(
        a, MakeSet(3, {{1, 1000, 9}}, key_, key_, "host-a", [&](schema::GrantSet::Builder set) {
          bad(set.initHostPolicy().initResources(1)[0]);
        }));
    EXPECT_NE(r.rejected_set.find("host policy"), std::string::npos) << r.rejected_set;
    EXPECT_FALSE(r.host_policy.has_value());
    EXPECT_TRUE(enforcer_.log.empty());
    EXPECT_EQ(a.version(), 0u);
  }
  std::optional<HostPolicyView> kept;
  std::string forged = MakeSet(4, {}, other_key_, other_key_, "host-a",
                               [](schema::GrantSet::Builder set) { set.initHostPolicy(); });
  Status s = schema::ReadCanonical<schema::SignedGrantSet>(
      forged, "set", [&](auto set) { return a.ReadHostPolicy(set, &kept); });
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(kept.has_value());
  std::string good = MakeSet(4, {}, key_, key_, "host-a",
                             [](schema::GrantSet::Builder set) { set.initHostPolicy(); });
  s = schema::ReadCanonical<schema::SignedGrantSet>(
      good, "set", [&](auto set) { return a.ReadHostPolicy(set, &kept); });
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(kept.has_value());
}

}  // namespace
}  // namespace latch::agent
