// latch-witness's configuration (TOML):
//
//   name = "witness.example/w1"          # its key's name (printable ASCII, no spaces or '+')
//   data_dir = "/var/lib/latch-witness"  # its key (witness.key, 0600) and state
//   listen = "0.0.0.0:8444"              # HTTPS: POST /add-checkpoint, GET /metrics, /healthz
//   cert = "<data_dir>/tls.crt"          # made self-signed on first start if absent
//   key = "<data_dir>/tls.key"
//   idle_timeout_ms = 10000
//
//   [[log]]                              # each log it witnesses
//   origin = "latch.example/ledger"
//   keys = ["<origin>+<id>+<base64>"]    # the log's verifier keys (latch-collector keys)
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "lib/status/status.h"
#include "lib/tlog/signed_note.h"

namespace latch::witness {

struct WitnessConfig {
  std::string name;
  std::string data_dir;
  std::string listen_address = "127.0.0.1";
  uint16_t port = 8444;
  std::string cert, key;  // empty: under data_dir
  int idle_timeout_ms = 10000;
  std::map<std::string, std::vector<tlog::NoteVerifier>> logs;  // origin -> its keys

  std::string key_path() const { return data_dir + "/witness.key"; }
  std::string state_dir() const { return data_dir + "/state"; }
};

// One-line InvalidArgument naming the file, line and setting for a mistake.
Status ParseWitnessConfig(std::string_view text, const std::string& source, WitnessConfig* out);
Status LoadWitnessConfig(const std::string& path, WitnessConfig* out);

}  // namespace latch::witness
