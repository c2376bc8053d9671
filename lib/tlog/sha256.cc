#include "lib/tlog/sha256.h"

#include <openssl/evp.h>

#include <cstdio>
#include <cstdlib>

namespace latch::tlog {
namespace {

// Fetched once; EVP_MD objects are immutable and safe to share across threads.
const EVP_MD* Sha256Md() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

// OpenSSL failing to hash is an impossible state (no allocation happens after
// the context exists): stop rather than produce a wrong hash.
void CheckOpenSsl(int rc, const char* what) {
  if (rc != 1) {
    std::fprintf(stderr, "fatal: OpenSSL %s failed\n", what);
    std::abort();
  }
}

}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr || Sha256Md() == nullptr) {
    std::fprintf(stderr, "fatal: OpenSSL has no SHA-256\n");
    std::abort();
  }
  Reset();
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::Reset() { CheckOpenSsl(EVP_DigestInit_ex2(ctx_, Sha256Md(), nullptr), "digest init"); }

void Sha256::Update(const void* data, size_t size) {
  CheckOpenSsl(EVP_DigestUpdate(ctx_, data, size), "digest update");
}

Hash Sha256::Finish() {
  Hash out;
  unsigned int len = 0;
  CheckOpenSsl(EVP_DigestFinal_ex(ctx_, out.data(), &len), "digest final");
  Reset();
  return out;
}

Hash Sha256::Of(std::span<const uint8_t> data) {
  Sha256 h;
  h.Update(data);
  return h.Finish();
}

}  // namespace latch::tlog
