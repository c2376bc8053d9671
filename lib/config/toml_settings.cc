#include "lib/config/toml_settings.h"

namespace latch::config {

Status ParseToml(std::string_view text, const std::string& source, toml::table* out) {
  try {
    *out = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return Bad(source, e.source(), std::string(e.description()));
  }
  return Status::Ok();
}

Status Bad(const std::string& source, const toml::source_region& where, const std::string& what) {
  return Status::InvalidArgument(source + ":" + std::to_string(where.begin.line) + ": " + what);
}

Status CheckKeys(const toml::table& t, const std::string& source,
                 const std::set<std::string>& known) {
  for (const auto& [k, v] : t) {
    if (known.count(std::string(k.str())) == 0) {
      return Bad(source, v.source(), "unknown setting '" + std::string(k.str()) + "'");
    }
  }
  return Status::Ok();
}

Status GetInRange(const toml::table& t, const std::string& source, const char* key, int64_t lo,
                  int64_t hi, uint64_t* out) {
  int64_t v = static_cast<int64_t>(*out);
  LATCH_RETURN_IF_ERROR(Get(t, source, key, &v, false));
  if (v < lo || v > hi) {
    return Bad(source, t.source(),
               std::string("setting '") + key + "' must be " + std::to_string(lo) + " to " +
                   std::to_string(hi));
  }
  *out = static_cast<uint64_t>(v);
  return Status::Ok();
}

Status GetStrings(const toml::table& t, const std::string& source, const char* key,
                  std::vector<std::string>* out, bool required) {
  const toml::node* n = t.get(key);
  if (n == nullptr) {
    if (required) return Bad(source, t.source(), std::string("missing setting '") + key + "'");
    return Status::Ok();
  }
  const toml::array* a = n->as_array();
  if (a == nullptr) {
    return Bad(source, n->source(), std::string("setting '") + key + "' must be a list of strings");
  }
  for (const toml::node& e : *a) {
    auto v = e.value<std::string>();
    if (!v || v->empty()) {
      return Bad(source, e.source(),
                 std::string("setting '") + key + "' must hold non-empty strings");
    }
    out->push_back(*v);
  }
  return Status::Ok();
}

}  // namespace latch::config
