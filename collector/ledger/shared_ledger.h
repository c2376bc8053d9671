// SharedLedger: a ledger that several collectors serve (issue 17), one of
// them the sequencer at a time. The others are standbys: their view follows
// what the sequencer commits, so that their derived state stays hot and a
// takeover replays only the last few entries. The files' ledger is never
// shared (one collector owns its directory) and has no such side.
#pragma once

#include <string>

#include "lib/status/status.h"

namespace latch::ledger {

class SharedLedger {
 public:
  virtual ~SharedLedger() = default;
  // Tries to become the sequencer; *became: whether this ledger is now
  // (then its view is the tree as the database has it, and it takes
  // commits). An error is about reaching the shared store.
  virtual Status TryBecomeSequencer(bool* became) = 0;
  virtual bool is_sequencer() const = 0;
  // A standby's view moves on to what the sequencer committed since the
  // last call; *grew: whether it did. Corruption: the shared tree shrank or
  // forked (the view stays where it was).
  virtual Status Follow(bool* grew) = 0;
  // Where this collector's API is reached, published while it is the
  // sequencer (from now, or from when it becomes it); "" publishes nothing.
  virtual void Advertise(const std::string& address) = 0;
  // What the current sequencer published ("": none, or not known).
  virtual Status SequencerAddress(std::string* address) = 0;
};

}  // namespace latch::ledger
