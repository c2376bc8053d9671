#include "console/static_files.h"

#include <algorithm>
#include <map>

#include "lib/tlog/hex.h"
#include "lib/tlog/sha256.h"

namespace latch::console {

const StaticFile* FindWebFile(std::string_view path) {
  auto files = WebFiles();
  auto it = std::lower_bound(files.begin(), files.end(), path,
                             [](const StaticFile& f, std::string_view p) { return f.path < p; });
  return it != files.end() && it->path == path ? &*it : nullptr;
}

std::string_view ContentTypeOf(std::string_view path) {
  auto ends = [&](std::string_view ext) {
    return path.size() >= ext.size() && path.substr(path.size() - ext.size()) == ext;
  };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".json")) return "application/json";
  if (ends(".svg")) return "image/svg+xml";
  if (ends(".png")) return "image/png";
  return "application/octet-stream";
}

std::string ETagOf(const StaticFile& file) {
  tlog::Hash h =
      tlog::Sha256::Of({reinterpret_cast<const uint8_t*>(file.bytes.data()), file.bytes.size()});
  return "\"" + tlog::HexEncode(h).substr(0, 16) + "\"";
}

}  // namespace latch::console
