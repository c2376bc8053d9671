#include "collector/api/session_book.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <vector>

#include "lib/logging/logger.h"
#include "lib/tlog/hex.h"
#include "lib/tlog/sha256.h"

namespace latch::api {
namespace {

std::string RandomHex() {
  std::array<uint8_t, 32> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    logging::Default().Error("the random source failed; cannot make a session", {});
    std::abort();
  }
  return tlog::HexEncode(bytes);
}

}  // namespace

SessionBook::Minted SessionBook::Mint() {
  Minted m;
  m.secret = RandomHex();
  m.hash = HashOf(m.secret);
  m.csrf = RandomHex();
  return m;
}

std::string SessionBook::HashOf(std::string_view secret) {
  return tlog::HexEncode(
      tlog::Sha256::Of({reinterpret_cast<const uint8_t*>(secret.data()), secret.size()}));
}

void SessionBook::Admit(const Minted& minted, Session session) {
  const std::string identity = session.identity;
  const int64_t now = session.started_at_ns;
  sessions_[minted.hash] = std::move(session);
  Trim(identity, now);
}

const SessionBook::Session* SessionBook::Find(std::string_view secret, int64_t now_ns) {
  // The lookup is by hash: the map's comparisons never touch the secret.
  auto it = sessions_.find(HashOf(secret));
  if (it == sessions_.end()) return nullptr;
  if (now_ns >= it->second.expires_at_ns) {
    sessions_.erase(it);
    return nullptr;
  }
  return &it->second;
}

const SessionBook::Session* SessionBook::ByHash(const std::string& hash) const {
  auto it = sessions_.find(hash);
  return it == sessions_.end() ? nullptr : &it->second;
}

bool SessionBook::End(const std::string& hash) { return sessions_.erase(hash) != 0; }

size_t SessionBook::KeepOnly(const std::set<std::string>& accepted) {
  size_t ended = 0;
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (accepted.count(it->second.credential) == 0) {
      it = sessions_.erase(it);
      ++ended;
    } else {
      ++it;
    }
  }
  return ended;
}

void SessionBook::Trim(const std::string& identity, int64_t now_ns) {
  std::vector<std::pair<int64_t, std::string>> mine;  // (start, hash)
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (now_ns >= it->second.expires_at_ns) {
      it = sessions_.erase(it);
      continue;
    }
    if (it->second.identity == identity) mine.emplace_back(it->second.started_at_ns, it->first);
    ++it;
  }
  // The identity's oldest first.
  std::sort(mine.begin(), mine.end());
  for (size_t i = 0; i + max_per_identity_ < mine.size(); ++i) sessions_.erase(mine[i].second);
  while (sessions_.size() > max_sessions_) {
    auto nearest = std::min_element(sessions_.begin(), sessions_.end(), [](auto& a, auto& b) {
      return a.second.expires_at_ns < b.second.expires_at_ns;
    });
    sessions_.erase(nearest);
  }
}

bool SecretsEqual(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace latch::api
