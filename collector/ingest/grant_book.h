// GrantBook: the collector's grants, signed with its grant key, and the
// versioned grant set each host is sent. Any change to a host's grants gives
// that host a new, higher version; agents apply only newer versions. The book
// is saved (atomically) in the data directory after every change.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tlog/signed_note.h"
#include "tlog/status.h"

namespace latch::collector {

struct GrantPrincipal {
  enum class Kind { kUid, kUserName, kCgroupPath };
  Kind kind = Kind::kUid;
  uint32_t uid = 0;
  std::string name;  // user name or cgroup path
};

struct GrantSpec {
  uint64_t id = 0;  // 0: the book picks the next free id
  std::vector<GrantPrincipal> principals;
  std::vector<uint32_t> resource_ids;
  std::vector<std::string> host_ids;
  int64_t not_before_unix_ns = 0;
  int64_t not_after_unix_ns = 0;
  bool break_glass = false;
};

class GrantBook {
 public:
  // Loads `dir`/grants.json if present; `key` signs new grants and sets.
  static Status Open(const std::string& dir, const tlog::NoteSigner& key,
                     std::unique_ptr<GrantBook>* out);

  // Validates and signs a grant; *signed_grant is the canonical SignedGrant
  // (what the ledger records), *changed the hosts whose set changed.
  Status Issue(GrantSpec spec, uint64_t* id, std::string* signed_grant,
               std::vector<std::string>* changed);
  // NotFound if no such grant is live.
  Status Revoke(uint64_t id, std::vector<std::string>* changed);
  // The host's current set as a canonical SignedGrantSet.
  Status SignedSet(const std::string& host, int64_t now_ns, std::string* signed_set) const;
  uint64_t version(const std::string& host) const;
  size_t grant_count() const { return grants_.size(); }

 private:
  struct Entry {
    std::string signed_grant;  // canonical SignedGrant
    std::vector<std::string> hosts;
  };
  GrantBook(std::string dir, const tlog::NoteSigner& key) : dir_(std::move(dir)), key_(key) {}
  Status Save() const;
  void Bump(const std::vector<std::string>& hosts);

  std::string dir_;
  const tlog::NoteSigner& key_;
  std::map<uint64_t, Entry> grants_;
  std::map<std::string, uint64_t> versions_;
  uint64_t next_version_ = 1;  // versions are unique across hosts: a set is never re-signed
};

}  // namespace latch::collector
