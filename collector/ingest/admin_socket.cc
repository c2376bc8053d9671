// CollectorServer's admin socket (root's only, ipc in the data directory):
// grants and the workflow by JSON requests, and a status answer.

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "collector/ingest/collector_server.h"
#include "collector/ingest/grant_keys.h"
#include "collector/ingest/state_snapshot.h"
#include "collector/ledger/entry_range.h"
#include "collector/workflow/duration.h"
#include "lib/logging/logger.h"
#include "lib/storage/append_file.h"
#include "lib/text/utf8.h"
#include "lib/tlog/checkpoint.h"
#include "schemas/canonical.h"
#include "schemas/event.capnp.h"
#include "schemas/record_codec.h"
#include "schemas/wire.capnp.h"
#include "schemas/wire_frame.h"
#include "schemas/workflow.capnp.h"

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
// caller names the identity it acts as (the socket is root's only).
void CollectorServer::HandleWorkflowAdmin(const std::string& op, const nlohmann::json& j,
                                          nlohmann::json* reply) {
  int64_t now = NowNs();
  workflow::AccessRequest r;
  Status s;
  uint64_t grant_id = 0;
  if (op == "requests") {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& [id, req] : workflow_->requests().all()) list.push_back(RequestJson(req));
    *reply = {{"ok", true}, {"requests", list}};
    return;
  }
  std::string identity = j.at("identity").get<std::string>();
  if (op == "request") {
    int64_t duration = 0;
    s = workflow::ParseDuration(j.at("duration").get<std::string>(), &duration);
    if (s.ok()) {
      s = workflow_->Request(identity, j.at("resource").get<std::string>(), duration,
                             j.value("reason", ""), now, &r);
    }
  } else if (op == "review") {
    s = RecordAsOne([&] {
      return workflow_->Review(identity, j.at("request_id").get<uint64_t>(),
                               j.at("approve").get<bool>(), j.value("comment", ""), now, &r,
                               &grant_id);
    });
  } else {
    s = workflow_->Cancel(identity, j.at("request_id").get<uint64_t>(), now, &r);
  }
  if (!s.ok()) {
    *reply = {{"ok", false}, {"error", s.ToString()}};
    return;
  }
  *reply = {{"ok", true}, {"request", RequestJson(r)}};
  if (grant_id != 0) (*reply)["grant_id"] = grant_id;
}

void CollectorServer::HandleAdmin() {
  zmq::message_t req;
  if (!admin_->recv(req, zmq::recv_flags::dontwait)) return;
  nlohmann::json reply;
  try {
    auto j = nlohmann::json::parse(req.to_string());
    std::string op = j.at("op").get<std::string>();
    std::string actor = j.value("actor", "admin");
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
        if (__builtin_mul_overflow(j.at("duration_s").get<int64_t>(), int64_t{1'000'000'000},
                                   &ns) ||
            __builtin_add_overflow(now, ns, &spec.not_after_unix_ns)) {
          throw std::out_of_range("duration_s is too large");
        }
      }
      spec.break_glass = j.value("break_glass", false);
      uint64_t id = 0;
      Status s = IssueGrant(spec, actor, &id);
      reply = s.ok() ? nlohmann::json{{"ok", true}, {"grant_id", id}}
                     : nlohmann::json{{"ok", false}, {"error", s.ToString()}};
    } else if (op == "revoke") {
      Status s = RevokeGrant(j.at("grant_id").get<uint64_t>(), actor, j.value("reason", ""));
      reply = s.ok() ? nlohmann::json{{"ok", true}}
                     : nlohmann::json{{"ok", false}, {"error", s.ToString()}};
    } else if (op == "request" || op == "review" || op == "cancel" || op == "requests") {
      HandleWorkflowAdmin(op, j, &reply);
    } else if (op == "status") {
      nlohmann::json hosts = nlohmann::json::array();
      for (auto& [h, r] : routes_) hosts.push_back(h);
      reply = {{"ok", true},
               {"ledger_size", ledger_->size()},
               {"ledger_writable", ledger_health_->writable()},
               {"ledger_reason", ledger_health_->reason()},
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
               {"alarms", counters_.alarms.load()}};
    } else {
      reply = {{"ok", false}, {"error", "unknown op '" + op + "'"}};
    }
  } catch (const nlohmann::json::exception& e) {
    reply = {{"ok", false}, {"error", std::string("bad request: ") + e.what()}};
  } catch (const std::exception& e) {
    reply = {{"ok", false}, {"error", std::string("bad request: ") + e.what()}};
  }
  std::string out = reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  admin_->send(zmq::buffer(out), zmq::send_flags::none);
}
}  // namespace latch::collector
