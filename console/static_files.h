// The web console's files (console/web), built into the collector, and how
// they are served: by path, with their content type and an ETag of their
// bytes. No file is ever a template: what the browser runs is what the
// repository holds.
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace latch::console {

struct StaticFile {
  std::string_view path;  // under console/web, e.g. "index.html", "js/app.js"
  std::string_view bytes;
};

// Every file, in path order (console_files.cc, generated).
std::span<const StaticFile> WebFiles();

// The file at `path`, or null.
const StaticFile* FindWebFile(std::string_view path);
// Its Content-Type, by extension ("application/octet-stream" if unknown).
std::string_view ContentTypeOf(std::string_view path);
// A strong ETag for its bytes: "\"<16 hex digits of their SHA-256>\"".
std::string ETagOf(const StaticFile& file);

// The policy every console page is served under: its own scripts, styles
// and API only; no inline script or style, no other origin, no framing.
constexpr std::string_view kContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

}  // namespace latch::console
