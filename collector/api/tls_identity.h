// The API's TLS certificate and key: loaded from PEM files, or, when neither
// exists yet, made on first start as a self-signed P-256 certificate for
// localhost and 127.0.0.1 (key mode 0600). Clients pin the certificate.
#pragma once

#include <string>

#include "lib/status/status.h"

namespace latch::api {

Status EnsureTlsIdentity(const std::string& cert_path, const std::string& key_path);

// Lower-case hex SHA-256 of a PEM certificate's DER form: what an
// [[api_client]] entry pins.
Status CertificateFingerprint(const std::string& pem_path, std::string* hex);

}  // namespace latch::api
