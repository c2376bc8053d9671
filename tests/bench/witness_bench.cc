// How many cosignatures one witness gives per second (issue 18): each
// add-checkpoint verifies the log's Ed25519 signature, checks the
// consistency proof from the size it holds, stores the new state durably
// (temp file, fsync, rename, fsync of the directory) and cosigns. The log
// grows by --step entries per checkpoint. Printed beside it, measured in the
// same run: the signature check alone, the durable write alone, and the
// cosignature alone, so the figure can be read as their sum.
//
//   build/tests/witness_bench [--checkpoints N] [--step S] [--dir D]
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "lib/storage/append_file.h"
#include "lib/tlog/base64.h"
#include "lib/tlog/checkpoint.h"
#include "lib/tlog/tree_reader.h"
#include "memory_hashes.h"
#include "witness/add_checkpoint.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace latch;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t checkpoints = 2000, step = 100;
  std::string base = std::filesystem::temp_directory_path();
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--checkpoints") {
      checkpoints = std::stoull(argv[i + 1]);
    } else if (flag == "--step") {
      step = std::stoull(argv[i + 1]);
    } else if (flag == "--dir") {
      base = argv[i + 1];
    } else {
      std::fprintf(stderr, "usage: witness_bench [--checkpoints N] [--step S] [--dir D]\n");
      return 2;
    }
  }
  const std::string dir = base + "/witness-bench-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  tlog::NoteSigner log;
  tlog::CosignatureSigner key;
  if (!tlog::NoteSigner::Generate("bench.example/log", &log).ok() ||
      !tlog::CosignatureSigner::Generate("bench.example/witness", &key).ok()) {
    return 1;
  }
  // The requests, built before any clock starts.
  tlog::MerkleHasher hasher;
  tlog::MemoryHashes hashes(tlog::NumberedLeaves(hasher, checkpoints * step));
  tlog::TreeReader reader(hashes);
  std::vector<std::string> bodies, notes;
  for (uint64_t i = 1; i <= checkpoints; ++i) {
    const uint64_t old_size = (i - 1) * step, size = i * step;
    tlog::Checkpoint cp{"bench.example/log", size, {}, {}};
    std::vector<tlog::Hash> proof;
    if (!reader.Root(size, &cp.root).ok() ||
        (old_size != 0 && !reader.ConsistencyProof(old_size, size, &proof).ok())) {
      return 1;
    }
    std::string note;
    if (!log.Sign(cp.Body(), &note).ok()) return 1;
    std::string body = "old " + std::to_string(old_size) + "\n";
    for (const tlog::Hash& h : proof) body += tlog::Base64Encode(h) + "\n";
    bodies.push_back(body + "\n" + note);
    notes.push_back(std::move(note));
  }
  witness::WitnessState state;
  if (Status s = witness::WitnessState::Open(dir + "/state", &state); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  witness::Witness w(key, {{"bench.example/log", {log.verifier()}}}, std::move(state));

  auto t = Clock::now();
  for (const std::string& body : bodies) {
    if (w.AddCheckpoint(body, 1796000000).status != 200) {
      std::fprintf(stderr, "a checkpoint was not cosigned\n");
      return 1;
    }
  }
  const double whole = Seconds(t);
  t = Clock::now();
  for (const std::string& note : notes) {
    tlog::Checkpoint cp;
    if (!tlog::OpenCheckpoint(note, log.verifier(), &cp).ok()) return 1;
  }
  const double verify = Seconds(t);
  t = Clock::now();
  for (const std::string& note : notes) {
    if (!storage::WriteFileAtomically(dir, "probe", note, 0600).ok()) return 1;
  }
  const double store = Seconds(t);
  t = Clock::now();
  std::string line;
  for (const std::string& note : notes) {
    if (!key.Cosign(note.substr(0, note.find("\n\n") + 1), 1796000000, &line).ok()) return 1;
  }
  const double cosign = Seconds(t);
  std::filesystem::remove_all(dir);
  const double n = static_cast<double>(checkpoints);
  std::printf("%llu checkpoints, %llu entries apart, state under %s\n",
              static_cast<unsigned long long>(checkpoints), static_cast<unsigned long long>(step),
              base.c_str());
  std::printf("add-checkpoint, whole:          %8.0f cosignatures/s  (%6.1f us each)\n", n / whole,
              whole / n * 1e6);
  std::printf("  the log's signature checked:  %8.0f /s              (%6.1f us)\n", n / verify,
              verify / n * 1e6);
  std::printf("  the state written durably:    %8.0f /s              (%6.1f us)\n", n / store,
              store / n * 1e6);
  std::printf("  the cosignature made:         %8.0f /s              (%6.1f us)\n", n / cosign,
              cosign / n * 1e6);
  return 0;
}
