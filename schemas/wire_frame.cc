#include "schemas/wire_frame.h"

#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>

namespace latch::schema {

std::string EncodeFrame(capnp::MessageBuilder& message) {
  kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  auto bytes = words.asBytes();
  return {reinterpret_cast<const char*>(bytes.begin()), bytes.size()};
}

Status ReadFrame(std::string_view frame, const std::function<void(Envelope::Reader)>& handle) {
  if (frame.empty() || frame.size() % sizeof(capnp::word) != 0) {
    return Status::Corruption("not whole Cap'n Proto words");
  }
  // Copied into aligned words: a received frame has no alignment promise.
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(frame.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), frame.data(), frame.size());
  try {
    capnp::ReaderOptions options;
    options.traversalLimitInWords = words.size() * 2 + 64;
    capnp::FlatArrayMessageReader message(words.asPtr(), options);
    handle(message.getRoot<Envelope>());
  } catch (const kj::Exception& e) {
    return Status::Corruption(e.getDescription().cStr());
  }
  return Status::Ok();
}

}  // namespace latch::schema
