// Reading checked settings from TOML, for every configuration file Latch has
// (agent, collector, policy): each failure is one InvalidArgument line that
// names the file, the line and the setting, so an operator can fix it at once.
#pragma once

#include <toml++/toml.h>

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "lib/status/status.h"

namespace latch::config {

// Parses `text` (named `source` in messages); a syntax error is one line.
Status ParseToml(std::string_view text, const std::string& source, toml::table* out);

// "source:line: what".
Status Bad(const std::string& source, const toml::source_region& where, const std::string& what);

// Refuses a key of `t` not in `known` ("unknown setting 'x'", at its line).
Status CheckKeys(const toml::table& t, const std::string& source,
                 const std::set<std::string>& known);

// Reads `key` into *out if present (missing: an error only when `required`);
// a value of another type is refused at its line. Exactly that type: toml++'s
// value<T>() would take `reattach_guard = 1` for true, or a float for an int.
template <typename T>
Status Get(const toml::table& t, const std::string& source, const char* key, T* out,
           bool required) {
  const toml::node* n = t.get(key);
  if (n == nullptr) {
    if (required) return Bad(source, t.source(), std::string("missing setting '") + key + "'");
    return Status::Ok();
  }
  auto v = n->value_exact<T>();
  if (!v) return Bad(source, n->source(), std::string("setting '") + key + "' has the wrong type");
  *out = *v;
  return Status::Ok();
}

// An integer setting within [lo, hi]; *out keeps its default when absent.
Status GetInRange(const toml::table& t, const std::string& source, const char* key, int64_t lo,
                  int64_t hi, uint64_t* out);

// A list of non-empty strings, appended to *out.
Status GetStrings(const toml::table& t, const std::string& source, const char* key,
                  std::vector<std::string>* out, bool required);

// The same, bound to one table: what a reader of many [[tables]] passes around.
class TableReader {
 public:
  TableReader(const toml::table& t, const std::string& source) : t_(t), source_(source) {}

  const toml::table& table() const { return t_; }
  const std::string& source() const { return source_; }
  Status Bad(const std::string& what) const { return config::Bad(source_, t_.source(), what); }
  Status Known(const std::set<std::string>& keys) const { return CheckKeys(t_, source_, keys); }
  template <typename T>
  Status Get(const char* key, T* out, bool required) const {
    return config::Get(t_, source_, key, out, required);
  }
  Status Strings(const char* key, std::vector<std::string>* out, bool required) const {
    return GetStrings(t_, source_, key, out, required);
  }

 private:
  const toml::table& t_;
  const std::string& source_;
};

// Calls fn(TableReader) for each [[name]] table of `root`.
template <typename Fn>
Status ForEachTable(const toml::table& root, const char* name, const std::string& source, Fn fn) {
  const toml::node* n = root.get(name);
  if (n == nullptr) return Status::Ok();
  const toml::array* list = n->as_array();
  if (list == nullptr) {
    return Bad(source, n->source(), std::string("'") + name + "' must be [[" + name + "]] tables");
  }
  for (const toml::node& e : *list) {
    const toml::table* t = e.as_table();
    if (t == nullptr) {
      return Bad(source, e.source(), std::string("'") + name + "' must be [[" + name + "]] tables");
    }
    LATCH_RETURN_IF_ERROR(fn(TableReader(*t, source)));
  }
  return Status::Ok();
}

}  // namespace latch::config
