// CURVE key pairs for the agent-collector channel (ZeroMQ's CurveZMQ). A key
// file holds two lines, the Z85 public key and the Z85 secret key, mode 0600;
// enrolment copies only the public line.
#pragma once

#include <string>

#include "lib/status/status.h"

namespace latch::schema {

struct CurveKeyPair {
  std::string public_z85;  // 40 characters
  std::string secret_z85;
};

// Loads `path`, or creates it with a fresh key pair if it does not exist.
Status LoadOrCreateCurveKey(const std::string& path, CurveKeyPair* out);
// True iff `key` is a 40-character Z85 CURVE key.
bool IsCurveKey(const std::string& key);

}  // namespace latch::schema
