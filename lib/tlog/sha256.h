// SHA-256 through OpenSSL's EVP interface. One Sha256 object is reused for
// many digests: the digest implementation is fetched once per process and the
// context once per object, which keeps per-hash overhead low on the append path.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

struct evp_md_ctx_st;

namespace latch::tlog {

using Hash = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  // Moves swap contexts, so both objects stay usable.
  Sha256(Sha256&& other) noexcept : Sha256() { std::swap(ctx_, other.ctx_); }
  Sha256& operator=(Sha256&& other) noexcept {
    std::swap(ctx_, other.ctx_);
    return *this;
  }

  void Reset();
  void Update(const void* data, size_t size);
  void Update(std::span<const uint8_t> data) { Update(data.data(), data.size()); }
  Hash Finish();  // also resets, ready for the next digest

  static Hash Of(std::span<const uint8_t> data);

 private:
  evp_md_ctx_st* ctx_;
};

}  // namespace latch::tlog
