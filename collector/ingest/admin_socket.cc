// CollectorServer's admin socket (root's only, ipc in the data directory):
// grants and the workflow by JSON requests, and a status answer.

#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "collector/ingest/collector_server.h"
#include "collector/workflow/duration.h"

namespace latch::collector {

namespace {
nlohmann::json RequestJson(const workflow::AccessRequest& r) {
  nlohmann::json reviews = nlohmann::json::array();
  for (const auto& v : r.reviews) {
    reviews.push_back({{"reviewer", v.reviewer}, {"approve", v.approve}, {"comment", v.comment}});
  }
  return {{"id", r.id},
          {"requester", r.requester},
          {"resource", r.resource},
          {"duration_ns", r.duration_ns},
          {"reason", r.reason},
          {"state", workflow::RequestStateName(r.state)},
          {"break_glass", r.break_glass},
          {"reviews", reviews}};
}
}  // namespace

// The workflow over the admin socket, until the HTTPS API carries it; the
// caller names the identity it acts as (the socket is root's only). Each
// change is an action, answered once it is on record.
void CollectorServer::HandleWorkflowAdmin(const std::string& op, const nlohmann::json& j,
                                          std::function<void(nlohmann::json)> reply) {
  if (op == "requests") {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& [id, req] : workflow_->requests().all()) list.push_back(RequestJson(req));
    return reply({{"ok", true}, {"requests", list}});
  }
  auto r = std::make_shared<workflow::AccessRequest>();
  auto grant_id = std::make_shared<uint64_t>(0);
  std::function<Status()> action;
  const std::string identity = j.at("identity").get<std::string>();
  if (op == "request") {
    int64_t duration = 0;
    Status parsed = workflow::ParseDuration(j.at("duration").get<std::string>(), &duration);
    if (!parsed.ok()) return reply({{"ok", false}, {"error", parsed.ToString()}});
    action = [this, identity, resource = j.at("resource").get<std::string>(), duration,
              reason = j.value("reason", ""), r] {
      return workflow_->Request(identity, resource, duration, reason, NowNs(), r.get());
    };
  } else if (op == "review") {
    action = [this, identity, id = j.at("request_id").get<uint64_t>(),
              approve = j.at("approve").get<bool>(), comment = j.value("comment", ""), r,
              grant_id] {
      return workflow_->Review(identity, id, approve, comment, NowNs(), r.get(), grant_id.get());
    };
  } else {
    action = [this, identity, id = j.at("request_id").get<uint64_t>(), r] {
      return workflow_->Cancel(identity, id, NowNs(), r.get());
    };
  }
  Act(std::move(action), [reply, r, grant_id](const Status& s) {
    if (!s.ok()) return reply({{"ok", false}, {"error", s.ToString()}});
    nlohmann::json out = {{"ok", true}, {"request", RequestJson(*r)}};
    if (*grant_id != 0) out["grant_id"] = *grant_id;
    reply(out);
  });
}

void CollectorServer::HandleAdmin() {
  // One request at a time (a REP socket): the next is taken once this one
  // is answered, which for a change is once it is on record.
  if (admin_busy_) return;
  zmq::message_t req;
  if (!admin_->recv(req, zmq::recv_flags::dontwait)) return;
  admin_busy_ = true;
  auto reply = [this](const nlohmann::json& out) {
    std::string bytes = out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    admin_->send(zmq::buffer(bytes), zmq::send_flags::none);
    admin_busy_ = false;
    PostTurn();  // another request may be waiting
  };
  try {
    AdminRequest(nlohmann::json::parse(req.to_string()), reply);
  } catch (const std::exception& e) {
    // Thrown before anything was changed or queued: bad input.
    reply({{"ok", false}, {"error", std::string("bad request: ") + e.what()}});
  }
}

void CollectorServer::AdminRequest(const nlohmann::json& j,
                                   std::function<void(nlohmann::json)> reply) {
  const std::string op = j.at("op").get<std::string>();
  const std::string actor = j.value("actor", "admin");
  if (standby_ && op != "status" && op != "agents" && op != "requests") {
    // Nothing is recorded here until this collector takes over.
    return reply({{"ok", false},
                  {"standby", true},
                  {"error", "this collector is a standby: run it against the sequencer" +
                                (sequencer_address_.empty()
                                     ? std::string(" (another collector on the same ledger)")
                                     : " (its API is at " + sequencer_address_ + ")")}});
  }
  if (op == "issue") {
    GrantSpec spec;
    spec.id = j.value("grant_id", uint64_t{0});
    for (auto& p : j.at("principals")) {
      GrantPrincipal gp;
      if (p.contains("uid")) {
        gp.kind = GrantPrincipal::Kind::kUid;
        gp.uid = p.at("uid").get<uint32_t>();
      } else if (p.contains("user")) {
        gp.kind = GrantPrincipal::Kind::kUserName;
        gp.name = p.at("user").get<std::string>();
      } else {
        gp.kind = GrantPrincipal::Kind::kCgroupPath;
        gp.name = p.at("cgroup").get<std::string>();
      }
      spec.principals.push_back(gp);
    }
    spec.resource_ids = j.at("resources").get<std::vector<uint32_t>>();
    spec.host_ids = j.at("hosts").get<std::vector<std::string>>();
    int64_t now = NowNs();
    spec.not_before_unix_ns = j.value("not_before_ns", now);
    if (j.contains("not_after_ns")) {
      spec.not_after_unix_ns = j.at("not_after_ns").get<int64_t>();
    } else {
      // Checked arithmetic: a huge duration_s must not wrap round to a
      // short (or past) grant.
      int64_t ns = 0;
      if (__builtin_mul_overflow(j.at("duration_s").get<int64_t>(), int64_t{1'000'000'000}, &ns) ||
          __builtin_add_overflow(now, ns, &spec.not_after_unix_ns)) {
        throw std::out_of_range("duration_s is too large");
      }
    }
    spec.break_glass = j.value("break_glass", false);
    auto id = std::make_shared<uint64_t>(0);
    return Act([this, spec, actor, id] { return grants_->Issue(spec, actor, id.get()); },
               [reply, id](const Status& s) {
                 reply(s.ok() ? nlohmann::json{{"ok", true}, {"grant_id", *id}}
                              : nlohmann::json{{"ok", false}, {"error", s.ToString()}});
               });
  }
  if (op == "revoke") {
    return Act([this, id = j.at("grant_id").get<uint64_t>(), actor,
                reason = j.value("reason", "")] { return grants_->Revoke(id, actor, reason); },
               [reply](const Status& s) {
                 reply(s.ok() ? nlohmann::json{{"ok", true}}
                              : nlohmann::json{{"ok", false}, {"error", s.ToString()}});
               });
  }
  if (op == "request" || op == "review" || op == "cancel" || op == "requests") {
    // Reads too wait for an action in flight: what they show is on record.
    return WhenSettled([this, op, j, reply] {
      try {
        HandleWorkflowAdmin(op, j, reply);
      } catch (const std::exception& e) {
        reply({{"ok", false}, {"error", std::string("bad request: ") + e.what()}});
      }
    });
  }
  if (op == "token_create") {
    const std::string host = j.at("host").get<std::string>();
    int64_t ttl_ns = 0;
    Status parsed = workflow::ParseDuration(j.value("ttl", std::string("1h")), &ttl_ns);
    if (!parsed.ok()) return reply({{"ok", false}, {"error", parsed.ToString()}});
    return CreateJoinToken(host, ttl_ns, actor, reply);
  }
  if (op == "agents") return WhenSettled([this, reply] { reply(DescribeAgents()); });
  if (op == "agent_remove") return RemoveAgent(j.at("host").get<std::string>(), actor, reply);
  if (op == "status") {
    nlohmann::json hosts = channel_->connected();
    return reply({{"ok", true},
                  {"role", shared_ == nullptr ? "single"
                           : standby_         ? "standby"
                                              : "sequencer"},
                  {"sequencer", standby_ ? sequencer_address_ : config_.ApiAdvertised(api_port())},
                  {"ledger_size", ledger_->size()},
                  {"ledger_writable", recorder_->writable()},
                  {"ledger_reason", recorder_->reason()},
                  {"connected", hosts},
                  {"batches", counters_.batches.load()},
                  {"records_appended", counters_.records_appended.load()},
                  {"records_duplicate", counters_.records_duplicate.load()},
                  {"records_out_of_order", counters_.records_out_of_order.load()},
                  {"receipts", counters_.receipts.load()},
                  {"refused_keys", counters_.refused_keys.load()},
                  {"malformed_messages", counters_.malformed_messages.load()},
                  {"oversized_messages", counters_.oversized_messages.load()},
                  {"grant_sets_sent", counters_.grant_sets_sent.load()},
                  {"applied_reports", counters_.applied_reports.load()},
                  {"alarms", counters_.alarms.load()}});
  }
  reply({{"ok", false}, {"error", "unknown op '" + op + "'"}});
}
}  // namespace latch::collector
