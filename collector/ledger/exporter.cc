#include "collector/ledger/exporter.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "lib/tlog/checkpoint.h"
#include "lib/tlog/tree_reader.h"

namespace latch::ledger {
namespace {

namespace fs = std::filesystem;

Status WriteFile(const fs::path& path, const std::string& data) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) return Status::IoError("create " + path.parent_path().string() + ": " + ec.message());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.close();
  if (!out) return Status::IoError("write " + path.string() + " failed");
  return Status::Ok();
}

}  // namespace

Status ExportLog(TileSource& source, const tlog::NoteVerifier& key, const std::string& out_dir,
                 ExportResult* result) {
  std::error_code ec;
  if (fs::exists(out_dir, ec) && (!fs::is_directory(out_dir, ec) || !fs::is_empty(out_dir, ec))) {
    return Status::InvalidArgument(out_dir + " exists and is not an empty directory");
  }
  std::string note;
  LATCH_RETURN_IF_ERROR(source.ReadCheckpoint(&note));
  tlog::Checkpoint cp;
  LATCH_RETURN_IF_ERROR(tlog::OpenCheckpoint(note, key, &cp));

  const fs::path root(out_dir);
  uint64_t files = 0;
  std::string data;
  auto copy = [&](const tlog::TileId& tile) -> Status {
    LATCH_RETURN_IF_ERROR(source.ReadTile(tile, &data).WithContext(tile.Path()));
    ++files;
    return WriteFile(root / tile.Path(), data);
  };
  // Entry bundles (level kEntries == -1), then each level of hash tiles.
  for (int level = tlog::TileId::kEntries;; ++level) {
    uint64_t count = level < 0 ? cp.size : tlog::HashesAtLevel(cp.size, level);
    if (count == 0) break;
    for (uint64_t index = 0; index * tlog::kTileWidth < count; ++index) {
      auto width =
          static_cast<uint32_t>(std::min(tlog::kTileWidth, count - index * tlog::kTileWidth));
      LATCH_RETURN_IF_ERROR(copy({level, index, width}));
    }
  }
  LATCH_RETURN_IF_ERROR(WriteFile(root / "checkpoint", note));
  result->size = cp.size;
  result->files = files + 1;
  return Status::Ok();
}

}  // namespace latch::ledger
