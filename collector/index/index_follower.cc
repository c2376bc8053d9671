#include "collector/index/index_follower.h"

#include <cstdio>

namespace latch::index {

Status IndexLedger(ledger::Ledger& ledger, EventIndex* index, uint64_t batch,
                   const std::function<void(uint64_t)>& progress) {
  const uint64_t target = ledger.size();
  std::vector<std::string> entries;
  while (index->size() < target) {
    uint64_t from = index->size();
    uint64_t to = std::min(target, from + batch);
    entries.clear();
    // Whole bundles at a time: one read per 256 entries.
    for (uint64_t i = from; i < to;) {
      uint64_t bundle = i / tlog::kTileWidth;
      uint64_t width = std::min<uint64_t>(tlog::kTileWidth, target - bundle * tlog::kTileWidth);
      std::string data;
      LATCH_RETURN_IF_ERROR(ledger.ReadTile(
          {tlog::TileId::kEntries, bundle, static_cast<uint32_t>(width)}, &data));
      size_t pos = 0;
      for (uint64_t k = 0; k < width; ++k) {
        if (pos + 2 > data.size()) return Status::Corruption("entry bundle " + std::to_string(bundle) + " is short");
        size_t len = (static_cast<uint8_t>(data[pos]) << 8) | static_cast<uint8_t>(data[pos + 1]);
        if (pos + 2 + len > data.size()) return Status::Corruption("entry bundle " + std::to_string(bundle) + " is short");
        uint64_t index_of = bundle * tlog::kTileWidth + k;
        if (index_of >= i && index_of < to) entries.emplace_back(data, pos + 2, len);
        pos += 2 + len;
      }
      i = std::min(to, (bundle + 1) * tlog::kTileWidth);
    }
    tlog::Hash root{};
    LATCH_RETURN_IF_ERROR(ledger.RootAt(to, &root));
    LATCH_RETURN_IF_ERROR(index->Add(entries, root));
    if (progress) progress(index->size());
  }
  return Status::Ok();
}

void IndexFollower::Start() { thread_ = std::thread([this] { Loop(); }); }

void IndexFollower::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  progress_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void IndexFollower::Notify() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_ = true;
  }
  wake_.notify_one();
}

uint64_t IndexFollower::WaitPast(uint64_t size, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  progress_.wait_for(lock, timeout, [&] { return stop_ || indexed_.load() > size; });
  return indexed_.load();
}

void IndexFollower::Loop() {
  bool failing = false;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      // A missed Notify costs at most this long; a failure is retried then too.
      wake_.wait_for(lock, std::chrono::milliseconds(failing ? 1000 : 200),
                     [&] { return stop_ || pending_; });
      if (stop_) return;
      pending_ = false;
    }
    Status s = IndexLedger(ledger_, index_.get(), 16384, [&](uint64_t size) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        indexed_ = size;
      }
      progress_.notify_all();
    });
    if (!s.ok()) {
      // Degraded: queries answer from what is indexed; logged, counted, retried.
      failures_.fetch_add(1);
      if (!failing) std::fprintf(stderr, "latch-collector: events index behind: %s\n", s.ToString().c_str());
      failing = true;
    } else {
      failing = false;
    }
  }
}

}  // namespace latch::index
