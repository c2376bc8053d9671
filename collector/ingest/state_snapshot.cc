#include "collector/ingest/state_snapshot.h"

#include <cstring>
#include <filesystem>

#include "lib/storage/append_file.h"
#include "lib/tlog/sha256.h"

namespace latch::collector {
namespace {

constexpr std::string_view kMagic = "LATCHSS1";
// Large enough for millions of requests and ended grants; a bound all the same.
constexpr size_t kMaxSnapshotBytes = size_t{1} << 30;

tlog::Hash Digest(std::string_view bytes) {
  return tlog::Sha256::Of({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
}

}  // namespace

Status WriteStateSnapshot(const std::string& dir, const std::string& name,
                          const StateSnapshot& snapshot) {
  nlohmann::json j = {
      {"origin", snapshot.origin},
      {"size", snapshot.size},
      {"root", nlohmann::json::binary({snapshot.root.begin(), snapshot.root.end()})},
      {"state", snapshot.state}};
  std::string bytes(kMagic);
  nlohmann::json::to_cbor(j, bytes);
  tlog::Hash digest = Digest(bytes);
  bytes.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  return storage::WriteFileAtomically(dir, name, bytes, 0600);
}

Status ReadStateSnapshot(const std::string& path, StateSnapshot* out) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return Status::NotFound(path + " does not exist");
  std::string bytes;
  LATCH_RETURN_IF_ERROR(storage::ReadWholeFile(path, &bytes, kMaxSnapshotBytes));
  if (bytes.size() < kMagic.size() + 32 || bytes.compare(0, kMagic.size(), kMagic) != 0) {
    return Status::Corruption(path + " is not a state snapshot");
  }
  std::string_view body(bytes.data(), bytes.size() - 32);
  tlog::Hash digest = Digest(body);
  if (std::memcmp(digest.data(), bytes.data() + body.size(), 32) != 0) {
    return Status::Corruption(path + " is damaged (its SHA-256 does not match)");
  }
  try {
    nlohmann::json j = nlohmann::json::from_cbor(body.substr(kMagic.size()));
    out->origin = j.at("origin").get<std::string>();
    out->size = j.at("size").get<uint64_t>();
    const auto& root = j.at("root").get_binary();
    if (root.size() != out->root.size()) return Status::Corruption(path + ": a root of bad size");
    std::memcpy(out->root.data(), root.data(), root.size());
    out->state = std::move(j.at("state"));
  } catch (const std::exception& e) {
    return Status::Corruption(path + " is malformed: " + e.what());
  }
  return Status::Ok();
}

}  // namespace latch::collector
