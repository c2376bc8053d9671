#include "schemas/grant_signature.h"

#include "schemas/canonical.h"

namespace latch::schema {
namespace {

Status Sign(const tlog::NoteSigner& key, const char* context, const std::string& bytes,
            tlog::Ed25519Signature* signature) {
  return key.SignBytes(std::string(context) + bytes, signature);
}

// Checks key id and signature over context || bytes.
Status Check(const GrantKeys& keys, const char* context, const std::string& bytes, uint32_t key_id,
             capnp::Data::Reader signature, const char* what) {
  const tlog::NoteVerifier* key = keys.Find(key_id);
  if (key == nullptr) {
    return Status::VerifyFailed(std::string(what) + " is signed by another key (id " +
                                std::to_string(key_id) + ")");
  }
  if (!key->Verify(std::string(context) + bytes, {signature.begin(), signature.size()})) {
    return Status::VerifyFailed(std::string(what) + " signature does not verify");
  }
  return Status::Ok();
}

}  // namespace

const tlog::NoteVerifier* GrantKeys::Find(uint32_t key_id) const {
  for (const tlog::NoteVerifier& k : keys_) {
    if (k.key_id() == key_id) return &k;
  }
  return nullptr;
}

Status SignGrant(const tlog::NoteSigner& key, Grant::Reader grant, SignedGrant::Builder out) {
  std::string bytes = CanonicalBytes(grant);
  tlog::Ed25519Signature sig;
  LATCH_RETURN_IF_ERROR(Sign(key, kGrantContext, bytes, &sig));
  out.setGrant(AsData(bytes));
  out.setSignature({sig.data(), sig.size()});
  out.setKeyId(key.verifier().key_id());
  return Status::Ok();
}

Status OpenSignedGrant(const GrantKeys& keys, SignedGrant::Reader signed_grant,
                       std::string* grant_bytes) {
  std::string bytes = AsString(signed_grant.getGrant());
  LATCH_RETURN_IF_ERROR(Check(keys, kGrantContext, bytes, signed_grant.getKeyId(),
                              signed_grant.getSignature(), "grant"));
  LATCH_RETURN_IF_ERROR(
      ReadCanonical<Grant>(bytes, "signed grant", [](Grant::Reader) { return Status::Ok(); }));
  *grant_bytes = std::move(bytes);
  return Status::Ok();
}

Status SignGrantSet(const tlog::NoteSigner& key, GrantSet::Reader set,
                    SignedGrantSet::Builder out) {
  std::string bytes = CanonicalBytes(set);
  tlog::Ed25519Signature sig;
  LATCH_RETURN_IF_ERROR(Sign(key, kGrantSetContext, bytes, &sig));
  out.setSet(AsData(bytes));
  out.setSignature({sig.data(), sig.size()});
  out.setKeyId(key.verifier().key_id());
  return Status::Ok();
}

Status OpenSignedGrantSet(const GrantKeys& keys, SignedGrantSet::Reader signed_set,
                          std::string* set_bytes) {
  std::string bytes = AsString(signed_set.getSet());
  LATCH_RETURN_IF_ERROR(Check(keys, kGrantSetContext, bytes, signed_set.getKeyId(),
                              signed_set.getSignature(), "grant set"));
  LATCH_RETURN_IF_ERROR(
      ReadCanonical<GrantSet>(bytes, "grant set", [](GrantSet::Reader) { return Status::Ok(); }));
  *set_bytes = std::move(bytes);
  return Status::Ok();
}

}  // namespace latch::schema
