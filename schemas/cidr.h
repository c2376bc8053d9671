// CIDR blocks as the guard keys them: 16 bytes, IPv4 as IPv4-mapped IPv6.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "lib/status/status.h"

namespace latch::resource {

struct Cidr {
  std::array<uint8_t, 16> addr{};  // network address, host bits zero
  uint32_t prefixlen = 0;          // of the 128-bit form (IPv4 /n is 96 + n)

  // Parses "10.0.0.0/8", "192.0.2.7" (a /32), "2001:db8::/32", "::1".
  // Host bits must be zero: "10.0.0.1/8" is refused as a likely mistake.
  static Status Parse(std::string_view text, Cidr* out);
  // True iff this block contains all of `other`.
  bool Contains(const Cidr& other) const;
  std::string ToString() const;
  bool operator==(const Cidr&) const = default;
};

}  // namespace latch::resource
