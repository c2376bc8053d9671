#include "lib/tlog/ed25519.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <memory>

namespace latch::tlog {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

}  // namespace

Status GenerateEd25519Seed(Ed25519Seed* seed) {
  if (RAND_priv_bytes(seed->data(), static_cast<int>(seed->size())) != 1) {
    return Status::IoError("OpenSSL's random generator failed");
  }
  return Status::Ok();
}

Status DeriveEd25519PublicKey(const Ed25519Seed& seed, Ed25519PublicKey* out) {
  Pkey key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), seed.size()));
  size_t len = out->size();
  if (!key || EVP_PKEY_get_raw_public_key(key.get(), out->data(), &len) != 1 ||
      len != out->size()) {
    return Status::InvalidArgument("not an Ed25519 private key");
  }
  return Status::Ok();
}

Status SignEd25519(const Ed25519Seed& seed, std::span<const uint8_t> message,
                   Ed25519Signature* out) {
  Pkey key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), seed.size()));
  MdCtx ctx(EVP_MD_CTX_new());
  size_t len = out->size();
  if (!key || !ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), out->data(), &len, message.data(), message.size()) != 1 ||
      len != out->size()) {
    return Status::IoError("Ed25519 signing failed in OpenSSL");
  }
  return Status::Ok();
}

bool VerifyEd25519(const Ed25519PublicKey& key, std::span<const uint8_t> message,
                   std::span<const uint8_t> signature) {
  if (signature.size() != sizeof(Ed25519Signature)) return false;
  Pkey pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, key.data(), key.size()));
  MdCtx ctx(EVP_MD_CTX_new());
  return pkey && ctx &&
         EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) == 1 &&
         EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), message.data(),
                          message.size()) == 1;
}

}  // namespace latch::tlog
