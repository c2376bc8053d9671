#include "collector/record/refusal_log.h"

#include <capnp/message.h>

#include "collector/record/recorder.h"
#include "lib/logging/logger.h"
#include "lib/text/utf8.h"
#include "schemas/canonical.h"
#include "schemas/workflow.capnp.h"

namespace latch::collector {

void RefusalLog::Count(const std::string& what, const std::string& detail, const std::string& peer,
                       const std::string& identity) {
  Tally& t = tallies_[{what, std::string(text::TruncateUtf8(identity, 256))}];
  t.count++;
  t.last = std::string(text::TruncateUtf8(detail, 1024));
  auto key = std::make_pair(std::string(text::TruncateUtf8(detail, 512)),
                            std::string(text::TruncateUtf8(peer, 128)));
  auto it = t.distinct.find(key);
  if (it != t.distinct.end()) {
    it->second++;
  } else if (t.distinct.size() < kMaxDetails) {
    t.distinct.emplace(std::move(key), 1);
  } else {
    t.unlisted++;
  }
}

void RefusalLog::Flush(Recorder& recorder, int64_t now_ns, bool force) {
  if (!force && now_ns - flushed_ns_ < 1'000'000'000) return;
  flushed_ns_ = now_ns;
  for (auto& [kind, t] : tallies_) {
    if (t.count == 0) continue;
    const auto& [what, identity] = kind;
    logging::Default().Warn(
        "refused input",
        {{"kind", what}, {"count", t.count}, {"distinct", t.distinct.size()}, {"last", t.last}});
    capnp::MallocMessageBuilder m;
    auto a = m.initRoot<schema::WorkflowAction>();
    a.setActor("collector");
    auto r = a.initRefusal();
    r.setWhat(what);
    r.setDetail(t.last);
    r.setCount(t.count);
    auto details = r.initDetails(static_cast<unsigned>(t.distinct.size()));
    unsigned i = 0;
    for (const auto& [key, n] : t.distinct) {
      details[i].setDetail(key.first);
      details[i].setPeer(key.second);
      details[i].setCount(n);
      ++i;
    }
    r.setUnlisted(t.unlisted);
    if (!identity.empty()) r.setIdentity(identity);
    recorder.RecordLater(schema::CanonicalBytes(a.asReader()), "");
    t = Tally{};
  }
}

}  // namespace latch::collector
