#include "collector/ledger/verifier.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "collector/ledger/tile_hash_reader.h"
#include "lib/tlog/merkle_hash.h"
#include "lib/tlog/tree_reader.h"
#include "lib/tlog/witnessed_checkpoint.h"

namespace latch::ledger {
namespace {

using tlog::Hash;
using tlog::kTileWidth;
using tlog::TileId;

class LogVerifier {
 public:
  LogVerifier(TileSource& source, uint64_t size) : source_(source), size_(size) {}

  Status Run(uint64_t* tiles_checked);

 private:
  Status CheckBundle(uint64_t index, uint32_t width);
  // Compares stored tile (level, index, width) with `expected`; a full tile's
  // root then becomes an expected hash of the level above.
  Status CheckTile(int level, uint64_t index, const std::vector<Hash>& expected);
  Status ReadHashTile(const TileId& tile, std::vector<Hash>* out);

  TileSource& source_;
  const uint64_t size_;
  tlog::MerkleHasher hasher_;
  std::vector<std::vector<Hash>> expected_;  // by level: computed, not yet compared
  std::string data_;
  std::vector<Hash> leaves_;
  std::vector<Hash> stored_;
  uint64_t tiles_ = 0;
};

Status LogVerifier::Run(uint64_t* tiles_checked) {
  for (uint64_t b = 0; b * kTileWidth < size_; ++b) {
    auto width = static_cast<uint32_t>(std::min(kTileWidth, size_ - b * kTileWidth));
    LATCH_RETURN_IF_ERROR(CheckBundle(b, width));
  }
  // The right edge: partial tiles whose hashes were computed but not yet compared.
  for (int level = 1; level < static_cast<int>(expected_.size()); ++level) {
    if (expected_[level].empty()) continue;
    uint64_t index = tlog::HashesAtLevel(size_, level) / kTileWidth;
    std::vector<Hash> expected = std::move(expected_[level]);
    expected_[level].clear();
    LATCH_RETURN_IF_ERROR(CheckTile(level, index, expected));
  }
  *tiles_checked = tiles_;
  return Status::Ok();
}

Status LogVerifier::CheckBundle(uint64_t index, uint32_t width) {
  TileId tile{TileId::kEntries, index, width};
  Status s = source_.ReadTile(tile, &data_);
  if (!s.ok()) return s.WithContext(tile.Path());
  ++tiles_;
  leaves_.clear();
  size_t pos = 0;
  for (uint32_t i = 0; i < width; ++i) {
    uint64_t entry = index * kTileWidth + i;
    if (pos + 2 > data_.size()) {
      return Status::Corruption(tile.Path() + ": ends before entry " + std::to_string(entry));
    }
    size_t len = (static_cast<uint8_t>(data_[pos]) << 8) | static_cast<uint8_t>(data_[pos + 1]);
    if (pos + 2 + len > data_.size()) {
      return Status::Corruption(tile.Path() + ": entry " + std::to_string(entry) +
                                " runs past the end of the bundle");
    }
    leaves_.push_back(
        hasher_.Leaf({reinterpret_cast<const uint8_t*>(data_.data()) + pos + 2, len}));
    pos += 2 + len;
  }
  if (pos != data_.size()) {
    return Status::Corruption(tile.Path() + ": " + std::to_string(data_.size() - pos) +
                              " bytes after its last entry");
  }
  TileId hashes{0, index, width};
  LATCH_RETURN_IF_ERROR(ReadHashTile(hashes, &stored_));
  for (uint32_t i = 0; i < width; ++i) {
    if (stored_[i] != leaves_[i]) {
      return Status::Corruption("entry " + std::to_string(index * kTileWidth + i) + " in " +
                                tile.Path() + " does not match its hash in " + hashes.Path());
    }
  }
  if (width == kTileWidth) return CheckTile(0, index, leaves_);
  return Status::Ok();
}

Status LogVerifier::ReadHashTile(const TileId& tile, std::vector<Hash>* out) {
  Status s = source_.ReadTile(tile, &data_);
  if (!s.ok()) return s.WithContext(tile.Path());
  ++tiles_;
  if (data_.size() != tile.width * sizeof(Hash)) {
    return Status::Corruption(tile.Path() + ": " + std::to_string(data_.size()) +
                              " bytes instead of " + std::to_string(tile.width * sizeof(Hash)));
  }
  out->resize(tile.width);
  std::memcpy(out->data(), data_.data(), data_.size());
  return Status::Ok();
}

Status LogVerifier::CheckTile(int level, uint64_t index, const std::vector<Hash>& expected) {
  if (level > 0) {
    TileId tile{level, index, static_cast<uint32_t>(expected.size())};
    std::vector<Hash> stored;
    LATCH_RETURN_IF_ERROR(ReadHashTile(tile, &stored));
    for (size_t i = 0; i < expected.size(); ++i) {
      if (stored[i] != expected[i]) {
        TileId below{level - 1, index * kTileWidth + i, 256};
        return Status::Corruption(tile.Path() + ": hash " + std::to_string(i) +
                                  " does not match the root of " + below.Path());
      }
    }
  }
  if (expected.size() < kTileWidth) return Status::Ok();
  Hash root = hasher_.PerfectRoot(expected);
  size_t up = static_cast<size_t>(level) + 1;
  if (expected_.size() <= up) expected_.resize(up + 1);
  expected_[up].push_back(root);
  if (expected_[up].size() == kTileWidth) {
    std::vector<Hash> full = std::move(expected_[up]);
    expected_[up].clear();
    return CheckTile(static_cast<int>(up), index / kTileWidth, full);
  }
  return Status::Ok();
}

}  // namespace

Status VerifyLog(TileSource& source, const tlog::NoteVerifier& key, VerifyResult* result) {
  std::string note;
  LATCH_RETURN_IF_ERROR(source.ReadCheckpoint(&note).WithContext("checkpoint"));
  tlog::Checkpoint cp;
  LATCH_RETURN_IF_ERROR(tlog::OpenCheckpoint(note, key, &cp));

  LogVerifier verifier(source, cp.size);
  LATCH_RETURN_IF_ERROR(verifier.Run(&result->tiles_checked));

  TileHashReader hashes(source, cp.size);
  tlog::TreeReader tree(hashes);
  Hash root;
  LATCH_RETURN_IF_ERROR(tree.Root(cp.size, &root));
  if (root != cp.root) {
    return Status::Corruption("checkpoint: root does not match the tree the tiles hold");
  }
  result->checkpoint = std::move(cp);
  return Status::Ok();
}

Status CheckWitnessed(TileSource& source, uint64_t log_size, const tlog::NoteVerifier& key,
                      std::string_view note, const WitnessDemand& demand, WitnessedResult* result) {
  tlog::Checkpoint witnessed;
  std::vector<size_t> cosigned;
  LATCH_RETURN_IF_ERROR(tlog::OpenWitnessedCheckpoint(note, key, demand.witnesses, demand.quorum,
                                                      &witnessed, &cosigned)
                            .WithContext("witnessed checkpoint"));
  if (witnessed.size > log_size) {
    return Status::VerifyFailed("the witnesses cosigned " + std::to_string(witnessed.size) +
                                " entries, the ledger has " + std::to_string(log_size) +
                                ": entries were removed, or this is another fork");
  }
  TileHashReader hashes(source, log_size);
  tlog::TreeReader tree(hashes);
  Hash root;
  LATCH_RETURN_IF_ERROR(tree.Root(witnessed.size, &root));
  if (root != witnessed.root) {
    return Status::VerifyFailed("at size " + std::to_string(witnessed.size) +
                                " the ledger has another root than the witnesses cosigned: "
                                "another history under the same key (a split view)");
  }
  result->checkpoint = std::move(witnessed);
  result->cosigned = std::move(cosigned);
  return Status::Ok();
}

}  // namespace latch::ledger
