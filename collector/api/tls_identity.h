// The API's TLS certificate and key: loaded from PEM files, or, when neither
// exists yet, made on first start as a self-signed P-256 certificate for
// localhost, 127.0.0.1, ::1 and `names` (key mode 0600). Clients pin the
// certificate (it is its own CA).
#pragma once

#include <string>
#include <vector>

#include "lib/status/status.h"

namespace latch::api {

// `names`: more addresses or host names the certificate is for (the
// address the API listens on, and for 0.0.0.0 or :: this host's name and
// addresses: ListenNames). A name that is neither an IP address nor a DNS
// name is refused.
Status EnsureTlsIdentity(const std::string& cert_path, const std::string& key_path,
                         const std::vector<std::string>& names = {});

// What a certificate for an API listening on `address` should name: the
// address itself, or for an unspecified one (0.0.0.0, ::) this host's name
// and the addresses of its interfaces (issue 16: a remote latchctl failed
// with "certificate verify failed").
std::vector<std::string> ListenNames(const std::string& address);

// Lower-case hex SHA-256 of a PEM certificate's DER form: what an
// [[api_client]] entry pins.
Status CertificateFingerprint(const std::string& pem_path, std::string* hex);

}  // namespace latch::api
