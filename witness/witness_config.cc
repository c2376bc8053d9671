#include "witness/witness_config.h"

#include <cstdlib>

#include "lib/config/toml_settings.h"
#include "lib/storage/append_file.h"

namespace latch::witness {

using config::Bad;
using config::CheckKeys;
using config::Get;
using config::GetInRange;

Status ParseWitnessConfig(std::string_view text, const std::string& source, WitnessConfig* out) {
  toml::table root;
  LATCH_RETURN_IF_ERROR(config::ParseToml(text, source, &root));
  LATCH_RETURN_IF_ERROR(CheckKeys(
      root, source, {"name", "data_dir", "listen", "cert", "key", "idle_timeout_ms", "log"}));
  WitnessConfig c;
  LATCH_RETURN_IF_ERROR(Get(root, source, "name", &c.name, true));
  LATCH_RETURN_IF_ERROR(Get(root, source, "data_dir", &c.data_dir, true));
  if (!tlog::IsValidKeyName(c.name)) {
    return Bad(source, root.source(), "name must be printable ASCII without spaces or '+'");
  }
  if (c.data_dir.empty()) return Bad(source, root.source(), "data_dir must not be empty");
  std::string listen = c.listen_address + ":" + std::to_string(c.port);
  LATCH_RETURN_IF_ERROR(Get(root, source, "listen", &listen, false));
  const size_t colon = listen.rfind(':');
  const int port = colon == std::string::npos ? -1 : std::atoi(listen.c_str() + colon + 1);
  if (colon == std::string::npos || colon == 0 || port < 0 || port > 65535 ||
      listen.find_first_not_of("0123456789", colon + 1) != std::string::npos) {
    return Bad(source, root.source(), "listen must be ADDRESS:PORT");
  }
  c.listen_address = listen.substr(0, colon);
  c.port = static_cast<uint16_t>(port);
  LATCH_RETURN_IF_ERROR(Get(root, source, "cert", &c.cert, false));
  LATCH_RETURN_IF_ERROR(Get(root, source, "key", &c.key, false));
  uint64_t idle = static_cast<uint64_t>(c.idle_timeout_ms);
  LATCH_RETURN_IF_ERROR(GetInRange(root, source, "idle_timeout_ms", 100, 600000, &idle));
  c.idle_timeout_ms = static_cast<int>(idle);
  const toml::node* logs = root.get("log");
  const toml::array* list = logs == nullptr ? nullptr : logs->as_array();
  if (list == nullptr || list->empty()) {
    return Bad(source, root.source(), "at least one [[log]] to witness is needed");
  }
  for (const toml::node& e : *list) {
    const toml::table* t = e.as_table();
    if (t == nullptr) return Bad(source, e.source(), "'log' must be [[log]] tables");
    LATCH_RETURN_IF_ERROR(CheckKeys(*t, source, {"origin", "keys"}));
    std::string origin;
    std::vector<std::string> keys;
    LATCH_RETURN_IF_ERROR(Get(*t, source, "origin", &origin, true));
    LATCH_RETURN_IF_ERROR(config::GetStrings(*t, source, "keys", &keys, true));
    if (!tlog::IsValidKeyName(origin)) {
      return Bad(source, t->source(), "origin must be printable ASCII without spaces or '+'");
    }
    if (c.logs.count(origin) != 0) {
      return Bad(source, t->source(), "log '" + origin + "' is listed twice");
    }
    std::vector<tlog::NoteVerifier>& verifiers = c.logs[origin];
    for (const std::string& k : keys) {
      tlog::NoteVerifier v;
      Status s = tlog::NoteVerifier::Parse(k, &v);
      if (!s.ok()) return Bad(source, t->source(), "log '" + origin + "': " + s.message());
      if (v.name() != origin) {
        return Bad(
            source, t->source(),
            "log '" + origin + "': a key named '" + v.name() + "' cannot sign its checkpoints");
      }
      verifiers.push_back(v);
    }
  }
  *out = std::move(c);
  return Status::Ok();
}

Status LoadWitnessConfig(const std::string& path, WitnessConfig* out) {
  std::string text;
  Status s = storage::ReadWholeFile(path, &text);
  if (!s.ok()) return Status::NotFound("cannot read config file " + path + ": " + s.message());
  return ParseWitnessConfig(text, path, out);
}

}  // namespace latch::witness
