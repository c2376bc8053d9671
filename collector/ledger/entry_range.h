// Reading a run of ledger entries in order, a whole bundle (256 entries) per
// read: what start-up replay and the events index walk the ledger with
// (Ledger::ReadEntry reads the entry's bundle again for every entry).
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

#include "collector/ledger/ledger.h"
#include "lib/status/status.h"

namespace latch::ledger {

// Calls `visit(index, entry)` for entries [from, to) of `ledger` (to <=
// ledger.size()), in order; stops at the first non-OK status `visit` returns
// and returns it. `entry` is valid only during the call.
using EntryVisitor = std::function<Status(uint64_t index, std::string_view entry)>;
Status ForEachEntry(Ledger& ledger, uint64_t from, uint64_t to, const EntryVisitor& visit);

}  // namespace latch::ledger
