#include "schemas/cidr.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace latch::resource {
namespace {

bool IsV4Mapped(const std::array<uint8_t, 16>& a) {
  for (int i = 0; i < 10; ++i) {
    if (a[i] != 0) return false;
  }
  return a[10] == 0xff && a[11] == 0xff;
}

bool BitSet(const std::array<uint8_t, 16>& a, uint32_t bit) {
  return (a[bit / 8] >> (7 - bit % 8)) & 1;
}

}  // namespace

Status Cidr::Parse(std::string_view text, Cidr* out) {
  auto bad = [&](const char* why) {
    return Status::InvalidArgument("bad CIDR '" + std::string(text) + "': " + why);
  };
  std::string_view host = text;
  std::string_view len;
  size_t slash = text.find('/');
  if (slash != std::string_view::npos) {
    host = text.substr(0, slash);
    len = text.substr(slash + 1);
    if (len.empty()) return bad("empty prefix length");
  }
  std::string host_str(host);
  Cidr c;
  uint32_t max_len;
  uint32_t base;
  in_addr v4;
  in6_addr v6;
  if (inet_pton(AF_INET, host_str.c_str(), &v4) == 1) {
    c.addr[10] = 0xff;
    c.addr[11] = 0xff;
    std::memcpy(&c.addr[12], &v4, 4);
    max_len = 32;
    base = 96;
  } else if (inet_pton(AF_INET6, host_str.c_str(), &v6) == 1) {
    std::memcpy(c.addr.data(), &v6, 16);
    max_len = 128;
    base = 0;
  } else {
    return bad("not an IPv4 or IPv6 address");
  }
  uint32_t n = max_len;
  if (!len.empty()) {
    auto [end, ec] = std::from_chars(len.data(), len.data() + len.size(), n);
    if (ec != std::errc() || end != len.data() + len.size() || n > max_len) {
      return bad("prefix length out of range");
    }
  }
  c.prefixlen = base + n;
  for (uint32_t bit = c.prefixlen; bit < 128; ++bit) {
    if (BitSet(c.addr, bit)) return bad("address has bits set beyond the prefix");
  }
  *out = c;
  return Status::Ok();
}

bool Cidr::Contains(const Cidr& other) const {
  if (other.prefixlen < prefixlen) return false;
  for (uint32_t bit = 0; bit < prefixlen; ++bit) {
    if (BitSet(addr, bit) != BitSet(other.addr, bit)) return false;
  }
  return true;
}

std::string Cidr::ToString() const {
  char buf[INET6_ADDRSTRLEN];
  if (IsV4Mapped(addr) && prefixlen >= 96) {
    inet_ntop(AF_INET, &addr[12], buf, sizeof(buf));
    return std::string(buf) + "/" + std::to_string(prefixlen - 96);
  }
  inet_ntop(AF_INET6, addr.data(), buf, sizeof(buf));
  return std::string(buf) + "/" + std::to_string(prefixlen);
}

}  // namespace latch::resource
