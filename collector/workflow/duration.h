// Durations as people write them in policies and on command lines: a number
// and a unit, "90s", "30m", "4h", "2d", or several, "1h30m".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "lib/status/status.h"

namespace latch::workflow {

// InvalidArgument for anything else, for zero, and past a year.
Status ParseDuration(std::string_view text, int64_t* ns);
// The shortest exact form: 5400s -> "1h30m".
std::string FormatDuration(int64_t ns);

}  // namespace latch::workflow
