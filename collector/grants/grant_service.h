// GrantService: the collector's grants, from a signed grant to the hosts'
// kernels. It signs, issues, revokes and expires grants (each recorded
// through the Recorder, in the action that caused it), keeps the grant book
// (the grant set each host is sent, versioned), the grants that have ended,
// and when each grant took effect on each host (its agent's Applied report).
//
// A grant takes effect only once its record is durable (promise 7): inside
// an action, changed hosts are pushed when the action's batch is durable
// (Durable), and if it is not, the book is put back as it was before the
// action (Undo), versions included, so that a replay of the ledger gives
// the versions agents were sent.
//
// Owned by the loop thread. Pushing a set to a host is the agent channel's
// job: the service names the host to its GrantPusher.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "collector/grants/grant_book.h"
#include "collector/record/recorder.h"
#include "lib/status/status.h"
#include "lib/tlog/signed_note.h"
#include "schemas/workflow.capnp.h"

namespace latch::collector {

class GrantService {
 public:
  // Sends `host` its current grant set, if it is connected.
  using GrantPusher = std::function<void(const std::string& host)>;

  GrantService(tlog::NoteSigner key, std::vector<tlog::NoteVerifier> retired, Recorder& recorder,
               GrantPusher push);

  const tlog::NoteSigner& key() const { return key_; }
  const std::vector<tlog::NoteVerifier>& retired_keys() const { return retired_; }
  const GrantBook& book() const { return *book_; }

  // Inside an action (Recorder::open()): records grantIssued, puts the grant
  // in the book. `at_ns`: the time its record carries (0: now).
  Status Issue(const GrantSpec& spec, const std::string& actor, uint64_t* id, int64_t at_ns = 0);
  // NotFound if `id` is not live; otherwise records grantRevoked and ends it.
  Status Revoke(uint64_t id, const std::string& actor, const std::string& reason);
  // Grants past their window by `now_ns`: each recorded as expired and ended.
  Status ExpireEnded(int64_t now_ns);

  // A policyLoaded record (live: inside its action) gives the hosts it names
  // their resources and identities; changed hosts get new sets.
  void ApplyPolicy(schema::PolicyLoaded::Reader loaded, int64_t at_ns);

  // The action brackets (Collector::Act).
  void BeginAction();
  // Its records are durable: the hosts it changed get their new sets.
  void Durable();
  // They are not: the book is as it was at BeginAction.
  void Undo();
  // Whether an action's changes wait for durability: a set built now could
  // hold a grant that is not on record yet.
  bool acting() const { return action_.has_value(); }

  // Where a grant took effect: the first Applied report from each host; and
  // from when the host's policy (its resources) was in force there.
  void NoteApplied(const std::string& host, uint64_t version,
                   capnp::List<uint64_t>::Reader grant_ids, int64_t at_ns);
  // The host's current set, signed.
  Status SignedSet(const std::string& host, int64_t now_ns, std::string* signed_set) const;

  // The API's view: live grants (and with `past`, ended ones, newest first),
  // each with where it took effect, those that `visible` lets through.
  nlohmann::json Describe(bool past,
                          const std::function<bool(const nlohmann::json&)>& visible) const;
  // Each host the policy names: the resources it is sent, since when the
  // policy has them, and since when its kernel holds them (null: not yet).
  nlohmann::json DescribeHosts() const;
  // A live grant as GrantBook::Describe has it (null: not live).
  nlohmann::json DescribeLive(uint64_t id) const { return book_->Describe(id); }

  // A recorded grant action, in ledger order, at start.
  Status Replay(schema::WorkflowAction::Reader action, const std::string& host, int64_t at_ns,
                const std::string& where);
  // What a state snapshot keeps of this service, and back; Reset empties it.
  nlohmann::json ToSnapshot() const;
  Status FromSnapshot(const nlohmann::json& j);
  void Reset();

 private:
  void End(uint64_t id, const std::string& how, int64_t at_ns, std::vector<std::string>* changed);
  // Hosts whose sets changed: pushed now, or when the open action is durable.
  void Changed(const std::vector<std::string>& hosts);

  tlog::NoteSigner key_;
  std::vector<tlog::NoteVerifier> retired_;
  Recorder& recorder_;
  GrantPusher push_;
  std::unique_ptr<GrantBook> book_;
  // Grants that have ended, as they were described, for the API's past
  // listing; rebuilt from the ledger like the book.
  struct PastGrant {
    nlohmann::json grant;
    std::string ended;  // "revoked" | "expired"
    int64_t ended_at_ns = 0;
  };
  std::map<uint64_t, PastGrant> past_;
  // grant id -> host -> when that host's kernel first held it (Unix ns).
  std::map<uint64_t, std::map<std::string, int64_t>> effective_;
  // host -> the set version of its policy in force there, and since when.
  struct PolicyInForce {
    uint64_t version = 0;
    int64_t since_ns = 0;
  };
  std::map<std::string, PolicyInForce> policy_in_force_;
  struct OpenAction {
    std::unique_ptr<GrantBook> book_before;  // small: live grants and hosts' versions
    std::vector<uint64_t> ended;             // put among past_ by the action
    std::set<std::string> push;              // hosts whose sets changed
  };
  std::optional<OpenAction> action_;
};

}  // namespace latch::collector
