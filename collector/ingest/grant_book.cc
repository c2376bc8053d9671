#include "collector/ingest/grant_book.h"

#include <capnp/message.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

#include "collector/ledger/append_file.h"
#include "schemas/canonical.h"
#include "schemas/grant_signature.h"
#include "tlog/base64.h"

namespace latch::collector {
namespace {

constexpr char kFile[] = "grants.json";

std::string B64(const std::string& s) {
  return tlog::Base64Encode({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
}

}  // namespace

Status GrantBook::Open(const std::string& dir, const tlog::NoteSigner& key,
                       std::unique_ptr<GrantBook>* out) {
  std::unique_ptr<GrantBook> book(new GrantBook(dir, key));
  std::string text;
  Status s = ledger::ReadWholeFile(dir + "/" + kFile, &text, 256u << 20);
  if (s.ok()) {
    try {
      auto j = nlohmann::json::parse(text);
      book->next_version_ = j.at("next_version").get<uint64_t>();
      for (auto& [host, v] : j.at("versions").items()) book->versions_[host] = v.get<uint64_t>();
      for (auto& g : j.at("grants")) {
        auto bytes = tlog::Base64Decode(g.at("signed").get<std::string>());
        if (!bytes) return Status::Corruption(dir + "/" + kFile + ": bad base64");
        Entry e{std::string(bytes->begin(), bytes->end()),
                g.at("hosts").get<std::vector<std::string>>()};
        book->grants_[g.at("id").get<uint64_t>()] = std::move(e);
      }
    } catch (const nlohmann::json::exception& e) {
      return Status::Corruption(dir + "/" + kFile + ": " + e.what());
    }
  } else if (s.code() != Status::Code::kNotFound) {
    return s;
  }
  *out = std::move(book);
  return Status::Ok();
}

Status GrantBook::Save() const {
  nlohmann::json j;
  j["next_version"] = next_version_;
  j["versions"] = versions_;
  j["grants"] = nlohmann::json::array();
  for (const auto& [id, e] : grants_) {
    j["grants"].push_back({{"id", id}, {"hosts", e.hosts}, {"signed", B64(e.signed_grant)}});
  }
  return ledger::WriteFileAtomically(dir_, kFile, j.dump(), 0600);
}

void GrantBook::Bump(const std::vector<std::string>& hosts) {
  for (const std::string& h : hosts) versions_[h] = next_version_++;
}

uint64_t GrantBook::version(const std::string& host) const {
  auto it = versions_.find(host);
  return it == versions_.end() ? 0 : it->second;
}

Status GrantBook::Issue(GrantSpec spec, uint64_t* id, std::string* signed_grant,
                        std::vector<std::string>* changed) {
  if (spec.principals.empty()) return Status::InvalidArgument("a grant needs a principal");
  if (spec.resource_ids.empty()) return Status::InvalidArgument("a grant needs a resource");
  if (spec.host_ids.empty()) return Status::InvalidArgument("a grant needs a host");
  if (spec.not_after_unix_ns <= spec.not_before_unix_ns) {
    return Status::InvalidArgument("a grant must end after it begins");
  }
  for (uint32_t r : spec.resource_ids) {
    if (r == 0) return Status::InvalidArgument("resource id 0 is not valid");
  }
  for (const auto& p : spec.principals) {
    if (p.kind != GrantPrincipal::Kind::kUid && p.name.empty()) {
      return Status::InvalidArgument("a user name or cgroup path must not be empty");
    }
  }
  std::sort(spec.host_ids.begin(), spec.host_ids.end());
  spec.host_ids.erase(std::unique(spec.host_ids.begin(), spec.host_ids.end()),
                      spec.host_ids.end());
  if (spec.id == 0) spec.id = grants_.empty() ? 1 : grants_.rbegin()->first + 1;
  if (grants_.count(spec.id)) {
    return Status::AlreadyExists("grant " + std::to_string(spec.id) + " exists");
  }

  capnp::MallocMessageBuilder m;
  auto g = m.initRoot<schema::Grant>();
  g.setId(spec.id);
  auto ps = g.initPrincipals(static_cast<unsigned>(spec.principals.size()));
  for (unsigned i = 0; i < spec.principals.size(); ++i) {
    const GrantPrincipal& p = spec.principals[i];
    switch (p.kind) {
      case GrantPrincipal::Kind::kUid: ps[i].setUid(p.uid); break;
      case GrantPrincipal::Kind::kUserName: ps[i].setUserName(p.name); break;
      case GrantPrincipal::Kind::kCgroupPath: ps[i].setCgroupPath(p.name); break;
    }
  }
  auto rs = g.initResourceIds(static_cast<unsigned>(spec.resource_ids.size()));
  for (unsigned i = 0; i < spec.resource_ids.size(); ++i) rs.set(i, spec.resource_ids[i]);
  auto hs = g.initHostIds(static_cast<unsigned>(spec.host_ids.size()));
  for (unsigned i = 0; i < spec.host_ids.size(); ++i) hs.set(i, spec.host_ids[i]);
  g.setNotBeforeUnixNs(spec.not_before_unix_ns);
  g.setNotAfterUnixNs(spec.not_after_unix_ns);
  g.setBreakGlass(spec.break_glass);

  capnp::MallocMessageBuilder sm;
  auto sg = sm.initRoot<schema::SignedGrant>();
  LATCH_RETURN_IF_ERROR(schema::SignGrant(key_, g.asReader(), sg));
  std::string bytes = schema::CanonicalBytes(sg.asReader());

  grants_[spec.id] = {bytes, spec.host_ids};
  Bump(spec.host_ids);
  Status s = Save();
  if (!s.ok()) {
    grants_.erase(spec.id);  // not saved: not issued
    return s;
  }
  *id = spec.id;
  *signed_grant = std::move(bytes);
  *changed = spec.host_ids;
  return Status::Ok();
}

Status GrantBook::Revoke(uint64_t id, std::vector<std::string>* changed) {
  auto it = grants_.find(id);
  if (it == grants_.end()) return Status::NotFound("no grant " + std::to_string(id));
  Entry e = it->second;
  grants_.erase(it);
  Bump(e.hosts);
  Status s = Save();
  if (!s.ok()) {
    grants_[id] = e;
    return s;
  }
  *changed = e.hosts;
  return Status::Ok();
}

Status GrantBook::SignedSet(const std::string& host, int64_t now_ns,
                            std::string* signed_set) const {
  std::vector<const std::string*> mine;
  for (const auto& [id, e] : grants_) {
    if (std::find(e.hosts.begin(), e.hosts.end(), host) != e.hosts.end()) {
      mine.push_back(&e.signed_grant);
    }
  }
  capnp::MallocMessageBuilder m;
  auto set = m.initRoot<schema::GrantSet>();
  set.setHostId(host);
  set.setVersion(version(host));
  set.setIssuedAtNs(now_ns);
  auto list = set.initGrants(static_cast<unsigned>(mine.size()));
  for (unsigned i = 0; i < mine.size(); ++i) {
    LATCH_RETURN_IF_ERROR(schema::ReadCanonical<schema::SignedGrant>(
        *mine[i], "stored grant", [&](schema::SignedGrant::Reader r) {
          list.setWithCaveats(i, r);
          return Status::Ok();
        }));
  }
  capnp::MallocMessageBuilder sm;
  auto signed_root = sm.initRoot<schema::SignedGrantSet>();
  LATCH_RETURN_IF_ERROR(schema::SignGrantSet(key_, set.asReader(), signed_root));
  *signed_set = schema::CanonicalBytes(signed_root.asReader());
  return Status::Ok();
}

}  // namespace latch::collector
