// ApiConnection: a client's verified HTTPS connection to the collector's API
// (the server checked against a CA file, or the system's roots, and its
// name; a bearer token or a client certificate presented), for one call or
// a streamed answer. latchctl talks to the collector through it. Errors are
// statuses naming the server and why; nothing is thrown.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "lib/status/status.h"

namespace latch::client {

// Where and as whom a client talks to the API.
struct Endpoint {
  // https://host[:port], or several separated by commas (collectors sharing
  // one ledger): tried in order until one answers.
  std::string server;
  std::string token;  // a bearer token, or else a client certificate:
  std::string cert, key;
  std::string ca;  // the CA file the server is checked against (empty: the system's roots)
  std::string user_agent = "latch-client";
  // A request's body type (a witness takes text/plain).
  std::string content_type = "application/json";
  // Connecting, the handshake, and each call's request and answer: a server
  // that takes longer is given up (IoError), so a stalled server never
  // hangs a client. A stream's body (ReadSome) has no bound.
  std::chrono::milliseconds timeout{30000};
};

struct Reply {
  int status = 0;
  std::string body;
};

class ApiConnection {
 public:
  // Connects and completes the TLS handshake (within the endpoint's
  // timeout) with the first server that takes it. IoError naming each server and why otherwise;
  // InvalidArgument for a server that is not an https:// URL.
  static Status Open(const Endpoint& endpoint, std::unique_ptr<ApiConnection>* out);
  ~ApiConnection();

  // One request and its whole answer (bodies up to 64 MiB).
  Status Call(std::string_view method, const std::string& target, const std::string& body,
              Reply* out);
  // A streamed answer (server-sent events): sends a GET, reads the answer's
  // head; *status is its status and *first holds what of the body came with
  // it. Then ReadSome gives the body as it arrives.
  Status OpenStream(const std::string& target, int* status, std::string* first);
  // Blocks until more of a streamed body arrives (appended to *out), or the
  // stream ends (IoError).
  Status ReadSome(std::string* out);

 private:
  ApiConnection() = default;
  static Status OpenOne(const Endpoint& endpoint, std::unique_ptr<ApiConnection>* out);
  struct Impl;
  std::unique_ptr<Impl> impl_;
  Endpoint endpoint_;
  std::string host_;
};

// One call on a fresh connection.
Status Call(const Endpoint& endpoint, std::string_view method, const std::string& target,
            const std::string& body, Reply* out);

}  // namespace latch::client
