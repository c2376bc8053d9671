// SessionBook: the web console's sessions (issue 19). Someone signs in with
// an API token or client certificate and is given a session: a random
// secret, sent back as an HttpOnly cookie, and a CSRF token the console
// sends with every change (X-Latch-CSRF). The book keeps only the secret's
// SHA-256, so neither a memory dump nor the ledger (which records each
// session's start and end by that hash) holds a usable cookie.
//
// A session ends when its time is up (a bounded lifetime, fixed at sign-in,
// not extended by use), when its holder signs out, or when the credential
// that started it stops being accepted. The book is bounded: at most
// max_per_identity sessions per identity (a new one ends that identity's
// oldest) and max_sessions in all (a new one ends the one nearest its end).
// Sessions live in memory only: a restarted collector asks everyone to sign
// in again.
//
// Owned by the API's io_context thread (the collector's loop); not
// thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>

namespace latch::api {

class SessionBook {
 public:
  struct Session {
    std::string identity;
    std::string csrf;        // the token a change must carry
    std::string via;         // "token" or "cert": what signed in
    std::string credential;  // hex SHA-256 of that token or certificate
    int64_t started_at_ns = 0;
    int64_t expires_at_ns = 0;
  };
  // A session made but not yet admitted (it is put on record first).
  struct Minted {
    std::string secret;  // the cookie's value: 64 hex digits (256 random bits)
    std::string hash;    // hex SHA-256 of `secret`: what the book and the ledger keep
    std::string csrf;    // 64 hex digits
  };

  explicit SessionBook(size_t max_sessions = 10000, size_t max_per_identity = 32)
      : max_sessions_(max_sessions), max_per_identity_(max_per_identity) {}

  // Fresh random secret and CSRF token (OpenSSL's RAND_bytes). Aborts if the
  // random source fails: a guessable session is worse than none.
  static Minted Mint();
  static std::string HashOf(std::string_view secret);

  // Admits a minted session; ends others to stay within the bounds.
  void Admit(const Minted& minted, Session session);
  // The live session whose secret this is, or null (unknown, ended, or past
  // its time at `now_ns`: then it is forgotten).
  const Session* Find(std::string_view secret, int64_t now_ns);
  // The session with this hash (as Find left it), or null.
  const Session* ByHash(const std::string& hash) const;
  // Ends the session with this hash; false if there was none.
  bool End(const std::string& hash);
  // Ends every session whose credential is not among `accepted`; returns how
  // many ended.
  size_t KeepOnly(const std::set<std::string>& accepted);
  size_t size() const { return sessions_.size(); }

 private:
  // Forgets sessions past their time, and the earliest-ending ones beyond
  // the bounds for `identity` and in all.
  void Trim(const std::string& identity, int64_t now_ns);

  size_t max_sessions_;
  size_t max_per_identity_;
  std::map<std::string, Session> sessions_;  // by hash
};

// Whether two secrets are equal, in time that does not depend on where they
// differ.
bool SecretsEqual(std::string_view a, std::string_view b);

}  // namespace latch::api
