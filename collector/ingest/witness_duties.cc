// The collector's witnesses (issue 18; collector/witnessing/): started at
// open when the configuration lists any, driven from the loop's Maintain
// while this collector is the sequencer, their problems put on record
// (WitnessProblem), and the witnessed checkpoint served at /checkpoint.
#include <capnp/message.h>

#include "collector/ingest/collector_server.h"
#include "lib/logging/logger.h"
#include "schemas/canonical.h"
#include "schemas/workflow.capnp.h"

namespace latch::collector {

Status CollectorServer::StartWitnessing() {
  if (config_.witnesses.empty()) return Status::Ok();
  WitnessingOptions options;
  for (const CollectorConfig::Witness& w : config_.witnesses) {
    WitnessEndpoint e;
    e.url = w.url;
    e.ca = w.ca;
    LATCH_RETURN_IF_ERROR(
        tlog::CosignatureVerifier::Parse(w.key, &e.key).WithContext("witness key"));
    e.timeout = std::chrono::milliseconds(config_.witness_timeout_ms);
    options.witnesses.push_back(std::move(e));
  }
  options.quorum = config_.witness_quorum;
  options.interval = std::chrono::milliseconds(config_.witness_interval_ms);
  options.dir = config_.data_dir;
  LATCH_RETURN_IF_ERROR(Witnessing::Open(std::move(options), *ledger_, &witnessing_));
  channel_->set_witnessed_source([w = witnessing_.get()] { return w->published().note; });
  logging::Default().Info("witnessing", {{"witnesses", config_.witnesses.size()},
                                         {"quorum", config_.witness_quorum},
                                         {"witnessed_size", witnessing_->published().size}});
  return Status::Ok();
}

void CollectorServer::MaintainWitnessing() {
  if (witnessing_ == nullptr) return;
  // Rounds go out from the witnessing's own pacer, only while this
  // collector writes the ledger (not as a standby).
  witnessing_->SetActive(true);
  // Each new witnessed checkpoint (or one with more cosignatures) goes to
  // the agents, which demand one covering what they were acknowledged.
  const Witnessing::Published published = witnessing_->published();
  if (published.size != sent_witnessed_.first || published.cosignatures != sent_witnessed_.second) {
    sent_witnessed_ = {published.size, published.cosignatures};
    channel_->SendWitnessed(published.note);
  }
  for (const WitnessProblemEvent& e : witnessing_->TakeProblems()) {
    capnp::MallocMessageBuilder m;
    auto a = m.initRoot<schema::WorkflowAction>();
    a.setActor("collector");
    auto p = a.initWitnessProblem();
    p.setWitness(e.witness);
    p.setUrl(e.url);
    p.setWhat(e.what);
    p.setDetail(e.detail);
    p.setCount(e.count);
    p.setHeldSize(e.held_size);
    p.setLedgerSize(e.ledger_size);
    recorder_->RecordLater(schema::CanonicalBytes(a.asReader()), "");
  }
}

std::optional<api::ApiResponse> CollectorServer::ApiCheckpoint(const api::ApiRequest&,
                                                               const api::RouteArgs&,
                                                               const api::ApiServer::Respond&) {
  if (witnessing_ == nullptr) {
    return api::ApiResponse{200, "text/plain; charset=utf-8", ledger_->checkpoint_note()};
  }
  // With witnesses, the checkpoint a verifier should trust: the latest that
  // a quorum of them cosigned. None yet (a new ledger, witnesses that never
  // answered): 503, and the client asks again.
  Witnessing::Published p = witnessing_->published();
  if (p.note.empty()) {
    return api::ApiResponse{503, "text/plain; charset=utf-8",
                            "no checkpoint has been witnessed yet; try again shortly\n"};
  }
  return api::ApiResponse{200, "text/plain; charset=utf-8", p.note};
}

std::string CollectorServer::WitnessMetrics() const {
  if (witnessing_ == nullptr) return "";
  std::string text;
  const Witnessing::Published p = witnessing_->published();
  text += "# TYPE latch_collector_witnessed_size gauge\nlatch_collector_witnessed_size " +
          std::to_string(p.size) + "\n";
  text +=
      "# TYPE latch_collector_witnessed_cosignatures gauge\n"
      "latch_collector_witnessed_cosignatures " +
      std::to_string(p.cosignatures) + "\n";
  text +=
      "# TYPE latch_collector_witness_rounds_total counter\n"
      "latch_collector_witness_rounds_total " +
      std::to_string(witnessing_->rounds()) + "\n";
  text +=
      "# TYPE latch_collector_witnessed_publications_total counter\n"
      "latch_collector_witnessed_publications_total " +
      std::to_string(witnessing_->publications()) + "\n";
  text +=
      "# TYPE latch_collector_witnessed_store_failures_total counter\n"
      "latch_collector_witnessed_store_failures_total " +
      std::to_string(witnessing_->store_failures()) + "\n";
  const std::vector<WitnessView> views = witnessing_->Describe();
  auto per_witness = [&](const char* name, const char* type, auto value) {
    text += std::string("# TYPE latch_collector_witness_") + name + " " + type + "\n";
    for (const WitnessView& v : views) {
      // Witness names are signed-note key names (printable, no spaces);
      // a quote or backslash is escaped as the text format asks.
      std::string label;
      for (char c : v.name)
        label += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
      text += std::string("latch_collector_witness_") + name + "{witness=\"" + label + "\"} " +
              std::to_string(value(v)) + "\n";
    }
  };
  per_witness("cosigned_total", "counter", [](const WitnessView& v) { return v.cosigned; });
  per_witness("failures_total", "counter", [](const WitnessView& v) { return v.failures; });
  per_witness("conflicts_total", "counter", [](const WitnessView& v) { return v.conflicts; });
  per_witness("forked_total", "counter", [](const WitnessView& v) { return v.forked; });
  per_witness("held_size", "gauge", [](const WitnessView& v) { return v.held_size; });
  per_witness("failing", "gauge", [](const WitnessView& v) { return uint64_t{v.failing}; });
  return text;
}

}  // namespace latch::collector
