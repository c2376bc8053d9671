// The web console's side of the API (issue 19): its static files, served
// from memory under a strict Content-Security-Policy, and its sessions.
// Signing in is an ordinary authenticated call (a bearer token or a client
// certificate; a wrong one is a recorded 401 like any other) that is
// answered with a session cookie once the session is on record
// (sessionStarted); signing out is on record (sessionEnded) before the
// cookie stops working. Everything else the console does is the documented
// API (docs/API.md), the same calls latchctl makes.
#include <capnp/message.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "collector/api/json_body.h"
#include "collector/ingest/api_answer.h"
#include "collector/ingest/collector_server.h"
#include "collector/workflow/duration.h"
#include "console/static_files.h"
#include "lib/logging/logger.h"
#include "schemas/canonical.h"
#include "schemas/workflow.capnp.h"

namespace latch::collector {
namespace {

std::string SessionCookie(const std::string& value, int64_t max_age_s) {
  // __Host-: only over HTTPS, for this host alone, for every path.
  return std::string(api::ApiServer::kSessionCookie) + "=" + value +
         "; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=" + std::to_string(max_age_s);
}

}  // namespace

std::optional<api::ApiResponse> CollectorServer::ApiConsoleFile(const api::ApiRequest& req,
                                                                const api::RouteArgs& args,
                                                                const api::ApiServer::Respond&) {
  const std::string path = req.target.substr(0, req.target.find('?'));
  const console::StaticFile* file = console::FindWebFile(path == "/" ? "index.html" : args.rest);
  if (file == nullptr) return Error(404, "no such file");
  api::ApiResponse out{200, std::string(console::ContentTypeOf(file->path)), ""};
  const std::string etag = console::ETagOf(*file);
  // Always revalidated (a collector upgrade changes them), mostly by a 304.
  out.headers = {{"Cache-Control", "no-cache"},
                 {"ETag", etag},
                 {"Content-Security-Policy", std::string(console::kContentSecurityPolicy)},
                 {"Cross-Origin-Opener-Policy", "same-origin"},
                 {"Cross-Origin-Resource-Policy", "same-origin"}};
  if (req.if_none_match == etag) {
    out.status = 304;
    return out;
  }
  out.body = std::string(file->bytes);
  return out;
}

std::optional<api::ApiResponse> CollectorServer::ApiSignIn(const api::ApiRequest& req,
                                                           const api::RouteArgs&,
                                                           const api::ApiServer::Respond& respond) {
  if (req.via == "session") return Error(400, "already signed in; sign out first");
  nlohmann::json body;
  std::string why;
  if (!req.body.empty() && !api::ParseJsonBody(req.body, {}, &body, &why)) return Error(400, why);
  const int64_t now = NowNs();
  const int64_t ttl_s = int64_t{config_.api_session_minutes} * 60;
  auto minted = std::make_shared<api::SessionBook::Minted>(api::SessionBook::Mint());
  api::SessionBook::Session session;
  session.identity = req.identity;
  session.csrf = minted->csrf;
  session.via = req.via;
  session.credential = req.credential;
  session.started_at_ns = now;
  session.expires_at_ns = now + ttl_s * 1000000000;
  auto m = std::make_shared<capnp::MallocMessageBuilder>();
  auto a = m->initRoot<schema::WorkflowAction>();
  a.setActor(req.identity);
  auto s = a.initSessionStarted();
  s.setIdentity(req.identity);
  s.setSessionHash(minted->hash);
  s.setVia(req.via);
  s.setCredentialSha256(req.credential);
  s.setExpiresAtNs(session.expires_at_ns);
  Act(
      [this, m] {
        return recorder_->Record(
            schema::CanonicalBytes(m->getRoot<schema::WorkflowAction>().asReader()), "", NowNs());
      },
      [this, respond, minted, session, ttl_s](const Status& st) {
        if (!st.ok()) return respond(Error(503, st.message()));
        if (!api_) return respond(Error(503, "the collector is stopping"));
        api_->sessions().Admit(*minted, session);
        logging::Default().Info("console session started",
                                {{"identity", session.identity}, {"via", session.via}});
        api::ApiResponse out = Json(201, {{"identity", session.identity},
                                          {"csrf", session.csrf},
                                          {"expires_at_ns", session.expires_at_ns}});
        out.headers = {{"Set-Cookie", SessionCookie(minted->secret, ttl_s)},
                       {"Cache-Control", "no-store"}};
        respond(std::move(out));
      });
  return std::nullopt;  // answered once on record
}

std::optional<api::ApiResponse> CollectorServer::ApiSignOut(
    const api::ApiRequest& req, const api::RouteArgs&, const api::ApiServer::Respond& respond) {
  if (req.via != "session") return Error(400, "not a console session");
  auto m = std::make_shared<capnp::MallocMessageBuilder>();
  auto a = m->initRoot<schema::WorkflowAction>();
  a.setActor(req.identity);
  auto s = a.initSessionEnded();
  s.setIdentity(req.identity);
  s.setSessionHash(req.credential);
  s.setWhy("signed out");
  Act(
      [this, m] {
        return recorder_->Record(
            schema::CanonicalBytes(m->getRoot<schema::WorkflowAction>().asReader()), "", NowNs());
      },
      [this, respond, hash = req.credential, identity = req.identity](const Status& st) {
        if (!st.ok()) return respond(Error(503, st.message()));
        if (api_) api_->sessions().End(hash);
        logging::Default().Info("console session ended", {{"identity", identity}});
        api::ApiResponse out = Json(200, {{"signed_out", identity}});
        out.headers = {{"Set-Cookie", SessionCookie("", 0)}, {"Cache-Control", "no-store"}};
        respond(std::move(out));
      });
  return std::nullopt;
}

// Who the caller is and what the console should offer them: their roles,
// the resources they may request (with each rule's limits), the session's
// CSRF token, and the ledger's key and origin (which the console pins).
std::optional<api::ApiResponse> CollectorServer::ApiWhoAmI(const api::ApiRequest& req,
                                                           const api::RouteArgs&,
                                                           const api::ApiServer::Respond&) {
  const workflow::Policy* policy = workflow_->policy();
  if (policy == nullptr) return Error(409, "no policy is loaded");
  const workflow::Identity* who = policy->FindIdentity(req.identity);
  nlohmann::json requestable = nlohmann::json::array();
  bool approver = false;
  for (const auto& [name, r] : policy->resources()) {
    approver = approver || policy->MayApprove(req.identity, name);
    const workflow::RequestRule* rule = who ? policy->RequestRuleFor(*who, name) : nullptr;
    if (rule == nullptr) continue;
    requestable.push_back({{"name", name},
                           {"hosts", r.hosts},
                           {"max_duration", workflow::FormatDuration(rule->max_duration_ns)},
                           {"reason_required", rule->reason_required},
                           {"ticket_pattern", rule->ticket_pattern}});
  }
  nlohmann::json answer = {{"identity", req.identity},
                           {"via", req.via},
                           {"roles",
                            {{"approver", approver},
                             {"auditor", policy->IsAuditor(req.identity)},
                             {"admin", policy->IsAdmin(req.identity)}}},
                           {"requestable", requestable},
                           {"ledger", {{"origin", config_.origin}, {"key", ledger_vkey()}}}};
  if (req.via == "session" && api_) {
    // Read by a page of this origin only: another site's page can make the
    // browser send the cookie but cannot read the answer.
    if (const api::SessionBook::Session* s = api_->sessions().ByHash(req.credential)) {
      answer["csrf"] = s->csrf;
      answer["expires_at_ns"] = s->expires_at_ns;
    }
  }
  return Json(200, answer);
}

}  // namespace latch::collector
