// latchctl events: the audit trail, each result's inclusion proof checked
// against the signed checkpoint it names; --follow for the live tail.
#pragma once

#include <cstdint>
#include <string>

#include "collector/tools/latchctl_settings.h"

namespace latchctl {

struct EventsArgs {
  std::string host, user, resource, verdict, kind, since, until;
  uint64_t grant = 0;
  int limit = 0;  // 0: every page
  bool follow = false;
  bool no_verify = false;
};

// Prints the events (a table, or JSON with --json); the exit code.
int Events(const Settings& s, const EventsArgs& a);

}  // namespace latchctl
