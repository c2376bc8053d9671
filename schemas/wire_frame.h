// The agent-collector wire's framing, in one place for both ends: each
// message is one ZeroMQ frame holding one flat Cap'n Proto message (segment
// table first) whose root is an Envelope (schemas/wire.capnp).
#pragma once

#include <capnp/message.h>

#include <functional>
#include <string>
#include <string_view>

#include "lib/status/status.h"
#include "schemas/wire.capnp.h"

namespace latch::schema {

// The frame that carries `message`.
std::string EncodeFrame(capnp::MessageBuilder& message);

// Reads `frame` and hands its Envelope to `handle`. The frame must be whole
// words; a reader may walk at most about twice its words, so a hostile frame
// (pointers that overlap or loop) costs no more than its own size. Whatever
// the reading or `handle` meets that Cap'n Proto refuses (a bad pointer, a
// wrong type) ends in Corruption with the reason; nothing is thrown.
Status ReadFrame(std::string_view frame, const std::function<void(Envelope::Reader)>& handle);

}  // namespace latch::schema
