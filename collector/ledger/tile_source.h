// TileSource: the read side of a log as C2SP tlog-tiles serves it, whatever
// stores it: the ledger's own files, or a static directory made by export.
// The verifier and the exporter work on this interface only, so what they
// check and write is exactly what clients are served.
#pragma once

#include <string>

#include "lib/status/status.h"
#include "lib/tlog/tile_path.h"

namespace latch::ledger {

class TileSource {
 public:
  virtual ~TileSource() = default;
  // The latest signed checkpoint note, as served at "checkpoint".
  virtual Status ReadCheckpoint(std::string* note) = 0;
  // The bytes served at tile.Path(). NotFound if the log has no such tile.
  virtual Status ReadTile(const tlog::TileId& tile, std::string* data) = 0;
  // Where this source lives, for messages.
  virtual std::string Describe() const = 0;
};

// A static tlog-tiles directory: <root>/checkpoint and <root>/tile/...
class DirectoryTileSource : public TileSource {
 public:
  explicit DirectoryTileSource(std::string root) : root_(std::move(root)) {}
  Status ReadCheckpoint(std::string* note) override;
  Status ReadTile(const tlog::TileId& tile, std::string* data) override;
  std::string Describe() const override { return root_; }

 private:
  std::string root_;
};

}  // namespace latch::ledger
