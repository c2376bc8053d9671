// Canonical Cap'n Proto bytes: how every record Latch hashes, signs or stores
// is encoded (capnp::canonicalize), and the one way such bytes are read back:
// exactly one canonical message, or a Corruption status — never an exception.
#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>
#include <string>
#include <string_view>

#include "lib/status/status.h"

namespace latch::schema {

// The canonical bytes of a struct (anything with asReader() or a Reader).
template <typename Reader>
std::string CanonicalBytes(Reader reader) {
  kj::Array<capnp::word> words = capnp::canonicalize(reader);
  auto bytes = words.asBytes();
  return {reinterpret_cast<const char*>(bytes.begin()), bytes.size()};
}

// Bytes as a Cap'n Proto Data field (pointing at `s`, no copy) and back.
inline capnp::Data::Reader AsData(std::string_view s) {
  return {reinterpret_cast<const capnp::byte*>(s.data()), s.size()};
}
inline std::string AsString(capnp::Data::Reader d) {
  return {reinterpret_cast<const char*>(d.begin()), d.size()};
}

// Reads `bytes` as one canonical message whose root is a T, and returns
// fn(T::Reader). `what` names the record in error messages.
template <typename T, typename Fn>
Status ReadCanonical(std::string_view bytes, const std::string& what, Fn fn) {
  if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0) {
    return Status::Corruption(what + " is not a whole number of Cap'n Proto words");
  }
  // Copy into aligned words: stored bytes come from arbitrary offsets.
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), bytes.data(), bytes.size());
  try {
    capnp::ReaderOptions options;
    // Bounded by the message itself: isCanonical() and the getters each walk it once.
    options.traversalLimitInWords = words.size() * 4 + 16;
    kj::ArrayPtr<const capnp::word> segments[1] = {words.asPtr()};
    // A canonical message is a single segment without a segment table.
    capnp::SegmentArrayMessageReader message(kj::arrayPtr(segments, 1), options);
    if (!message.isCanonical()) return Status::Corruption(what + " is not in canonical form");
    return fn(message.getRoot<T>());
  } catch (const kj::Exception& e) {
    return Status::Corruption(what + " does not decode: " + e.getDescription().cStr());
  }
}

}  // namespace latch::schema
