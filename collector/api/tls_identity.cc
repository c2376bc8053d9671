#include "collector/api/tls_identity.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <set>

#include "lib/tlog/hex.h"
#include "lib/tlog/sha256.h"

namespace latch::api {
namespace {

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;

Status WritePem(const std::string& path, int mode, bool key, EVP_PKEY* pkey, X509* cert) {
  FILE* f = std::fopen(path.c_str(), "wx");
  if (f == nullptr) return Status::FromErrno("creating " + path, errno);
  ::chmod(path.c_str(), static_cast<mode_t>(mode));
  bool ok = key ? PEM_write_PrivateKey(f, pkey, nullptr, nullptr, 0, nullptr, nullptr) == 1
                : PEM_write_X509(f, cert) == 1;
  ok = std::fflush(f) == 0 && ok;
  std::fclose(f);
  return ok ? Status::Ok() : Status::IoError("writing " + path);
}

}  // namespace

namespace {

bool IsIpAddress(const std::string& text) {
  unsigned char buf[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, text.c_str(), buf) == 1 ||
         ::inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

// A DNS name as a certificate may carry it: labels of letters, digits and
// hyphens (nothing that could end or extend the extension's text).
bool IsDnsName(const std::string& text) {
  if (text.empty() || text.size() > 253) return false;
  for (char c : text) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.') return false;
  }
  return text.front() != '.' && text.front() != '-';
}

}  // namespace

std::vector<std::string> ListenNames(const std::string& address) {
  if (address != "0.0.0.0" && address != "::" && !address.empty()) return {address};
  std::vector<std::string> names;
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) == 0 && IsDnsName(host)) names.push_back(host);
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) == 0) {
    for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
      if (i->ifa_addr == nullptr) continue;
      char text[INET6_ADDRSTRLEN] = {};
      const void* raw = nullptr;
      if (i->ifa_addr->sa_family == AF_INET) {
        raw = &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr;
      } else if (i->ifa_addr->sa_family == AF_INET6) {
        auto* a6 = reinterpret_cast<sockaddr_in6*>(i->ifa_addr);
        if (IN6_IS_ADDR_LINKLOCAL(&a6->sin6_addr)) continue;  // needs a zone: not in a certificate
        raw = &a6->sin6_addr;
      }
      if (raw != nullptr && ::inet_ntop(i->ifa_addr->sa_family, raw, text, sizeof(text))) {
        names.push_back(text);
      }
    }
    ::freeifaddrs(list);
  }
  return names;
}

Status EnsureTlsIdentity(const std::string& cert_path, const std::string& key_path,
                         const std::vector<std::string>& names) {
  bool have_cert = std::filesystem::exists(cert_path), have_key = std::filesystem::exists(key_path);
  if (have_cert && have_key) return Status::Ok();
  if (have_cert != have_key) {
    return Status::FailedPrecondition("found one of " + cert_path + " and " + key_path +
                                      " but not the other");
  }
  PkeyPtr pkey(EVP_EC_gen("P-256"));
  X509Ptr cert(X509_new());
  if (!pkey || !cert) return Status::IoError("OpenSSL could not make a key");
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), static_cast<long>(::time(nullptr)));
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 10L * 365 * 24 * 3600);
  X509_set_pubkey(cert.get(), pkey.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("latch-collector"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  std::string alt = "DNS:localhost,IP:127.0.0.1,IP:::1";
  std::set<std::string> seen = {"localhost", "127.0.0.1", "::1"};
  for (const std::string& n : names) {
    if (!seen.insert(n).second) continue;
    if (IsIpAddress(n)) {
      alt += ",IP:" + n;
    } else if (IsDnsName(n)) {
      alt += ",DNS:" + n;
    } else {
      return Status::InvalidArgument("'" + n + "' is neither an IP address nor a DNS name");
    }
  }
  X509_EXTENSION* san = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, alt.c_str());
  if (san == nullptr) return Status::IoError("OpenSSL could not make the certificate's names");
  X509_add_ext(cert.get(), san, -1);
  X509_EXTENSION_free(san);
  if (X509_sign(cert.get(), pkey.get(), EVP_sha256()) == 0) {
    return Status::IoError("OpenSSL could not sign the certificate");
  }
  LATCH_RETURN_IF_ERROR(WritePem(key_path, 0600, true, pkey.get(), nullptr));
  return WritePem(cert_path, 0644, false, nullptr, cert.get());
}

Status CertificateFingerprint(const std::string& pem_path, std::string* hex) {
  FILE* f = std::fopen(pem_path.c_str(), "r");
  if (f == nullptr) return Status::FromErrno("open " + pem_path, errno);
  X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (cert == nullptr) return Status::InvalidArgument(pem_path + " holds no PEM certificate");
  unsigned char* der = nullptr;
  int len = i2d_X509(cert, &der);
  X509_free(cert);
  if (len <= 0) return Status::InvalidArgument(pem_path + ": the certificate does not encode");
  *hex = tlog::HexEncode(tlog::Sha256::Of({der, static_cast<size_t>(len)}));
  OPENSSL_free(der);
  return Status::Ok();
}

}  // namespace latch::api
