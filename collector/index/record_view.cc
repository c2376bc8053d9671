#include "collector/index/record_view.h"

#include <capnp/compat/json.h>

#include <algorithm>

#include "lib/text/utf8.h"
#include "lib/tlog/base64.h"
#include "lib/tlog/hex.h"
#include "schemas/activity_record.h"
#include "schemas/canonical.h"
#include "schemas/event.capnp.h"
#include "schemas/event_json.h"
#include "schemas/event_record.h"
#include "schemas/grant.capnp.h"
#include "schemas/record_codec.h"
#include "schemas/workflow.capnp.h"

namespace latch::index {
namespace {

// Cap'n Proto's JSON form of a struct, with the schemas' $Json annotations
// (Data fields as hex or base64) honoured.
template <typename T>
nlohmann::json CapnpJson(typename T::Reader r) {
  capnp::JsonCodec codec;
  codec.handleByAnnotation<T>();
  kj::String text = codec.encode(r);
  // Cap'n Proto does not check Text fields, and its JSON carries their bytes
  // as they are: an agent's alarm detail, or any record of a ledger written
  // by other code, may hold bytes that are not UTF-8 (JSON that nlohmann
  // refuses; every reader of that record then failed). They are shown as
  // U+FFFD. Found by tests/fuzz/ledger_record_fuzz.
  std::string_view json(text.cStr(), text.size());
  nlohmann::json out = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (out.is_discarded()) {
    out = nlohmann::json::parse(text::ReplaceInvalidUtf8(json), nullptr, false);
  }
  if (out.is_discarded()) out = {{"undecodable", true}};  // should not happen
  return out;
}

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

const char* LossKindName(schema::LossKind k) {
  switch (k) {
    case schema::LossKind::RING_BUFFER_FULL:
      return "ring_buffer_full";
    case schema::LossKind::SPOOL_FULL:
      return "spool_full";
    case schema::LossKind::DECODE_FAILURE:
      return "decode_failure";
    case schema::LossKind::ACTIVITY_RING_BUFFER_FULL:
      return "activity_ring_buffer_full";
    case schema::LossKind::ACTIVITY_CAPTURE_UNAVAILABLE:
      return "activity_capture_unavailable";
    case schema::LossKind::SPOOL_CORRUPT:
      return "spool_corrupt";
    default:
      return "unspecified";
  }
}

Status ViewDecision(const std::string& payload, RecordView* v, bool with_detail) {
  latch_decision_event e{};
  std::string identity;
  LATCH_RETURN_IF_ERROR(record::DecodeDecisionEvent(payload, &e, &identity));
  // Who holds the uid or cgroup, as the agent named them from the policy
  // (issue 16). An agent's text: a name that could not be one is left out.
  constexpr size_t kMaxIdentityBytes = 256;
  if (identity.size() > kMaxIdentityBytes || !text::IsValidUtf8(identity) ||
      std::any_of(identity.begin(), identity.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; })) {
    identity.clear();
  }
  v->identity = identity;
  if (with_detail) {
    v->detail = record::DecisionToJson(e, v->host);
    v->detail.erase("type");
    v->detail.erase("host_id");
    if (!identity.empty()) v->detail["identity"] = identity;
  }
  v->has_uid = true;
  v->uid = e.uid;
  if (e.grant_id != 0) v->grant_ids.push_back(e.grant_id);
  v->resource_id = e.resource_id;
  v->verdict = record::VerdictName(e.verdict);
  return Status::Ok();
}

Status ViewLoss(const std::string& payload, RecordView* v) {
  return schema::ReadCanonical<schema::LossEvent>(
      payload, "loss record", [&](schema::LossEvent::Reader r) {
        v->detail = {
            {"kind", LossKindName(r.getKind())}, {"count", r.getCount()}, {"total", r.getTotal()}};
        if (r.hasActivityKind()) v->detail["activity_kind"] = r.getActivityKind().cStr();
        if (r.getFirstLostSequence() != 0) {
          v->detail["first_lost_sequence"] = r.getFirstLostSequence();
        }
        if (r.hasReason()) v->detail["reason"] = r.getReason().cStr();
        return Status::Ok();
      });
}

// The grant inside a SignedGrant, as JSON.
Status ViewGrant(capnp::Data::Reader signed_grant_bytes, nlohmann::json* out, RecordView* v) {
  std::string bytes(reinterpret_cast<const char*>(signed_grant_bytes.begin()),
                    signed_grant_bytes.size());
  return schema::ReadCanonical<schema::Grant>(bytes, "grant", [&](schema::Grant::Reader g) {
    *out = CapnpJson<schema::Grant>(g);
    v->grant_ids.push_back(g.getId());
    if (g.getResourceIds().size() > 0) v->resource_id = g.getResourceIds()[0];
    return Status::Ok();
  });
}

Status ViewWorkflow(const std::string& payload, RecordView* v, bool with_detail) {
  return schema::ReadCanonical<schema::WorkflowAction>(
      payload, "workflow record", [&](schema::WorkflowAction::Reader a) -> Status {
        if (with_detail) v->detail = CapnpJson<schema::WorkflowAction>(a);
        v->identity = a.getActor();
        using W = schema::WorkflowAction;
        switch (a.which()) {
          case W::GRANT_ISSUED: {
            v->kind = "grantIssued";
            auto sg = a.getGrantIssued().getGrant();
            nlohmann::json grant;
            Status s = ViewGrant(sg.getGrant(), &grant, v);
            if (!s.ok()) return s;
            if (with_detail) v->detail["grantIssued"]["grant"]["grant"] = grant;
            return Status::Ok();
          }
          case W::GRANT_REVOKED:
            v->kind = "grantRevoked";
            v->grant_ids.push_back(a.getGrantRevoked().getGrantId());
            return Status::Ok();
          case W::GRANT_SET_APPLIED:
            v->kind = "grantSetApplied";
            for (uint64_t id : a.getGrantSetApplied().getGrantIds()) v->grant_ids.push_back(id);
            for (auto r : a.getGrantSetApplied().getRejected())
              v->grant_ids.push_back(r.getGrantId());
            // A revocation's (or an end's) application belongs to that grant's story.
            for (uint64_t id : a.getGrantSetApplied().getRemovedGrantIds()) {
              v->grant_ids.push_back(id);
            }
            return Status::Ok();
          case W::REFUSAL:
            v->kind = "refusal";
            v->identity = a.getRefusal().getIdentity();  // a 403's: shown to the one refused
            return Status::Ok();
          case W::AGENT_ALARM:
            v->kind = "agentAlarm";
            return Status::Ok();
          case W::AGENT_CONNECTED:
            v->kind = "agentConnected";
            return Status::Ok();
          case W::POLICY_LOADED:
            v->kind = "policyLoaded";
            for (auto r : a.getPolicyLoaded().getResources()) {
              v->resource_names.emplace_back(r.getId(), r.getName());
            }
            return Status::Ok();
          case W::REQUEST_CREATED: {
            v->kind = "requestCreated";
            auto r = a.getRequestCreated();
            v->request_id = r.getRequestId();
            v->identity = r.getRequester();
            v->resource = r.getResource();
            return Status::Ok();
          }
          case W::REQUEST_REVIEWED: {
            v->kind = "requestReviewed";
            auto r = a.getRequestReviewed();
            v->request_id = r.getRequestId();
            v->identity = r.getReviewer();
            return Status::Ok();
          }
          case W::REQUEST_DECIDED: {
            v->kind = "requestDecided";
            auto r = a.getRequestDecided();
            v->request_id = r.getRequestId();
            v->approved = std::string_view(r.getState().cStr()) == "approved";
            if (r.getGrantId() != 0) v->grant_ids.push_back(r.getGrantId());
            return Status::Ok();
          }
          case W::GRANT_EXPIRED:
            v->kind = "grantExpired";
            v->grant_ids.push_back(a.getGrantExpired().getGrantId());
            return Status::Ok();
          case W::GRANT_KEY_IN_USE:
            v->kind = "grantKeyInUse";
            return Status::Ok();
          case W::AGENT_SILENT:
            v->kind = "agentSilent";
            return Status::Ok();
          case W::OWN_RECORDS_DROPPED:
            v->kind = "ownRecordsDropped";
            return Status::Ok();
          case W::CONFIG_RELOADED:
            v->kind = "configReloaded";
            return Status::Ok();
          case W::JOIN_TOKEN_CREATED:
            v->kind = "joinTokenCreated";
            return Status::Ok();
          case W::AGENT_ENROLLED:
            v->kind = "agentEnrolled";
            return Status::Ok();
          case W::AGENT_REMOVED:
            v->kind = "agentRemoved";
            return Status::Ok();
          case W::API_CREDENTIAL_ADDED:
            v->kind = "apiCredentialAdded";
            return Status::Ok();
          case W::API_CREDENTIAL_REMOVED:
            v->kind = "apiCredentialRemoved";
            return Status::Ok();
          case W::WITNESS_PROBLEM:
            v->kind = "witnessProblem";
            return Status::Ok();
          case W::SESSION_STARTED:
            v->kind = "sessionStarted";
            v->identity = a.getSessionStarted().getIdentity();  // one's own sign-ins
            return Status::Ok();
          case W::SESSION_ENDED:
            v->kind = "sessionEnded";
            v->identity = a.getSessionEnded().getIdentity();
            return Status::Ok();
        }
        v->kind = "workflow";  // a union member newer than this reader
        return Status::Ok();
      });
}

}  // namespace

namespace {

// Strings in a view come from records nobody checked (Cap'n Proto's Text is
// any bytes, and so is a ledger written by other code): every string that is
// not UTF-8 is shown with U+FFFD, so that each reader can render it as JSON
// or on a terminal. Found by tests/fuzz/ledger_record_fuzz.
void MakeUtf8(std::string* s) {
  if (!text::IsValidUtf8(*s)) *s = text::ReplaceInvalidUtf8(*s);
}

void MakeUtf8(nlohmann::json* j) {
  if (j->is_string()) {
    MakeUtf8(j->get_ptr<std::string*>());
  } else if (j->is_array()) {
    for (auto& e : *j) MakeUtf8(&e);
  } else if (j->is_object()) {
    nlohmann::json fixed = nlohmann::json::object();
    bool keys_fixed = false;
    for (auto& [k, e] : j->items()) {
      MakeUtf8(&e);
      if (!text::IsValidUtf8(k)) keys_fixed = true;
    }
    if (keys_fixed) {
      for (auto& [k, e] : j->items()) fixed[text::ReplaceInvalidUtf8(k)] = std::move(e);
      *j = std::move(fixed);
    }
  }
}

void MakeUtf8(RecordView* v) {
  for (std::string* s : {&v->kind, &v->host, &v->identity, &v->resource, &v->verdict}) MakeUtf8(s);
  MakeUtf8(&v->detail);
}

}  // namespace

Status ViewWorkflowAction(std::string_view action, RecordView* out) {
  RecordView v;
  LATCH_RETURN_IF_ERROR(ViewWorkflow(std::string(action), &v, /*with_detail=*/true));
  MakeUtf8(&v);
  *out = std::move(v);
  return Status::Ok();
}

Status ViewRecord(std::string_view entry, RecordView* out, bool with_detail) {
  ledger::LedgerRecord record;
  LATCH_RETURN_IF_ERROR(ledger::DecodeRecord(entry, &record));
  RecordView v;
  v.host = record.host_id;
  v.time_ns = record.event_time_ns != 0 ? record.event_time_ns : record.receive_time_ns;
  switch (record.kind) {
    case ledger::RecordKind::kEvent:
      v.kind = "decision";
      LATCH_RETURN_IF_ERROR(ViewDecision(record.payload, &v, with_detail));
      break;
    case ledger::RecordKind::kLoss:
      v.kind = "loss";
      LATCH_RETURN_IF_ERROR(ViewLoss(record.payload, &v));
      break;
    case ledger::RecordKind::kWorkflow:
      LATCH_RETURN_IF_ERROR(ViewWorkflow(record.payload, &v, with_detail));
      break;
    case ledger::RecordKind::kActivity: {
      record::ActivitySummary a;
      LATCH_RETURN_IF_ERROR(
          record::ViewActivityEvent(record.payload, &a, with_detail ? &v.detail : nullptr));
      v.kind = a.kind;
      v.activity = true;
      v.has_uid = true;
      v.uid = a.uid;
      if (a.grant_id != 0) v.grant_ids.push_back(a.grant_id);
      break;
    }
    case ledger::RecordKind::kGuard:
      v.kind = "guardDetached";
      LATCH_RETURN_IF_ERROR(schema::ReadCanonical<schema::GuardEvent>(
          record.payload, "guard event", [&](schema::GuardEvent::Reader g) {
            nlohmann::json missing = nlohmann::json::array();
            for (auto m : g.getMissing()) missing.push_back(std::string(m.cStr()));
            v.detail = {{"missing", std::move(missing)}, {"reattached", g.getReattached()}};
            if (g.hasError()) v.detail["error"] = g.getError().cStr();
            return Status::Ok();
          }));
      break;
    case ledger::RecordKind::kOpaque:
      v.kind = "opaque";
      if (with_detail) v.detail = {{"payload_base64", tlog::Base64Encode(Bytes(record.payload))}};
      break;
  }
  MakeUtf8(&v);
  if (!with_detail) {
    *out = std::move(v);
    return Status::Ok();
  }
  nlohmann::json envelope = {{"kind", v.kind},
                             {"host", v.host},
                             {"event_time_ns", record.event_time_ns},
                             {"receive_time_ns", record.receive_time_ns}};
  if (!record.agent_boot_id.empty()) {
    envelope["agent_boot_id"] = tlog::HexEncode(Bytes(record.agent_boot_id));
    envelope["sequence"] = record.sequence;
  }
  envelope["record"] = std::move(v.detail);
  v.detail = std::move(envelope);
  *out = std::move(v);
  return Status::Ok();
}

}  // namespace latch::index
