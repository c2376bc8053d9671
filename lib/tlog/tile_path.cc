#include "lib/tlog/tile_path.h"

#include <cstdio>

namespace latch::tlog {
namespace {

bool ParseDecimal(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 19 || (s.size() > 1 && s[0] == '0')) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

bool ParseGroup(std::string_view s, uint64_t* out) {
  if (s.size() != 3) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

}  // namespace

std::string TileIndexPath(uint64_t index) {
  std::string out;
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%03u", static_cast<unsigned>(index % 1000));
  out = buf;
  for (index /= 1000; index > 0; index /= 1000) {
    std::snprintf(buf, sizeof(buf), "x%03u/", static_cast<unsigned>(index % 1000));
    out.insert(0, buf);
  }
  return out;
}

std::string TileId::Path() const {
  std::string p = "tile/";
  p += is_entries() ? "entries" : std::to_string(level);
  p += "/" + TileIndexPath(index);
  if (width < 256) p += ".p/" + std::to_string(width);
  return p;
}

Status TileId::Parse(std::string_view path, TileId* out) {
  auto bad = [&] { return Status::InvalidArgument("not a tile path: " + std::string(path)); };
  if (!path.starts_with("tile/")) return bad();
  path.remove_prefix(5);
  size_t slash = path.find('/');
  if (slash == std::string_view::npos) return bad();
  TileId t;
  std::string_view level = path.substr(0, slash);
  uint64_t l = 0;
  if (level == "entries") {
    t.level = kEntries;
  } else if (ParseDecimal(level, &l) && l <= 63) {
    t.level = static_cast<int>(l);
  } else {
    return bad();
  }
  path.remove_prefix(slash + 1);

  // Optional partial-width suffix.
  size_t partial = path.find(".p/");
  if (partial != std::string_view::npos) {
    uint64_t w = 0;
    if (!ParseDecimal(path.substr(partial + 3), &w) || w < 1 || w > 255) return bad();
    t.width = static_cast<uint32_t>(w);
    path = path.substr(0, partial);
  }
  // Groups: "xNNN/"* then "NNN". Canonical form only: re-encoding the value
  // must give back the same text (no "x000/" padding, no overflow).
  std::string_view text = path;
  uint64_t index = 0;
  while (true) {
    uint64_t g = 0;
    if (path.starts_with("x")) {
      if (path.size() < 5 || path[4] != '/' || !ParseGroup(path.substr(1, 3), &g)) return bad();
      path.remove_prefix(5);
    } else {
      if (!ParseGroup(path, &g)) return bad();
      path = {};
    }
    if (index > (UINT64_MAX - g) / 1000) return bad();
    index = index * 1000 + g;
    if (path.empty()) break;
  }
  t.index = index;
  if (TileIndexPath(t.index) != text) return bad();
  *out = t;
  return Status::Ok();
}

}  // namespace latch::tlog
