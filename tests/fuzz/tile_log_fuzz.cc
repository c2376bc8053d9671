// Tiles and proofs as a verifier receives them from a log it does not trust:
// latch-ledger verify's VerifyLog over tiles and bundles made of the input,
// under a checkpoint (size and root from the input) that is validly signed,
// so the checks past the signature are reached; tile paths as the API parses
// them; and inclusion and consistency proofs of any shape.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "collector/ledger/tile_source.h"
#include "collector/ledger/verifier.h"
#include "lib/tlog/checkpoint.h"
#include "lib/tlog/proof.h"
#include "lib/tlog/signed_note.h"
#include "lib/tlog/tile_path.h"

namespace {

using namespace latch;

const tlog::NoteSigner& Signer() {
  static const tlog::NoteSigner* signer = [] {
    auto* s = new tlog::NoteSigner();
    if (!tlog::NoteSigner::Generate("fuzz.example/log", s).ok()) std::abort();
    return s;
  }();
  return *signer;
}

// Reads the input front to back.
struct Input {
  std::string_view rest;
  uint64_t U64() {
    uint64_t v = 0;
    size_t n = std::min<size_t>(8, rest.size());
    std::memcpy(&v, rest.data(), n);
    rest.remove_prefix(n);
    return v;
  }
  std::string Bytes(size_t max) {
    size_t n = 0;
    if (!rest.empty()) {
      n = std::min<size_t>(static_cast<uint8_t>(rest[0]) * 8, max);
      rest.remove_prefix(1);
    }
    n = std::min(n, rest.size());
    std::string out(rest.substr(0, n));
    rest.remove_prefix(n);
    return out;
  }
  tlog::Hash Hash() {
    tlog::Hash h{};
    size_t n = std::min<size_t>(32, rest.size());
    std::memcpy(h.data(), rest.data(), n);
    rest.remove_prefix(n);
    return h;
  }
};

// Serves the checkpoint given, then each tile asked for from the input.
class FuzzTiles : public ledger::TileSource {
 public:
  FuzzTiles(std::string checkpoint, Input* input)
      : checkpoint_(std::move(checkpoint)), in_(input) {}
  Status ReadCheckpoint(std::string* note) override {
    *note = checkpoint_;
    return Status::Ok();
  }
  Status ReadTile(const tlog::TileId&, std::string* data) override {
    if (in_->rest.empty()) return Status::NotFound("no more input");
    *data = in_->Bytes(8 * 1024);
    return Status::Ok();
  }
  std::string Describe() const override { return "fuzz"; }

 private:
  std::string checkpoint_;
  Input* in_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in{std::string_view(reinterpret_cast<const char*>(data), size)};
  tlog::TileId tile;
  if (tlog::TileId::Parse(in.Bytes(64), &tile).ok() && tile.Path().empty()) std::abort();

  // Proofs: sizes, an index and up to 70 hashes from the input.
  uint64_t a = in.U64() % 100000, b = in.U64() % 100000;
  std::vector<tlog::Hash> proof(in.U64() % 70);
  for (auto& h : proof) h = in.Hash();
  tlog::Hash x = in.Hash(), y = in.Hash();
  (void)tlog::VerifyInclusion(a, b, x, proof, y);
  if (a > 0) (void)tlog::VerifyConsistency(a, b, proof, x, y);

  // A log of up to 4,096 entries whose every tile comes from the input.
  tlog::Checkpoint cp;
  cp.origin = Signer().name();
  cp.size = in.U64() % 4097;
  cp.root = in.Hash();
  std::string note;
  if (!Signer().Sign(cp.Body(), &note).ok()) std::abort();
  FuzzTiles tiles(note, &in);
  ledger::VerifyResult result;
  (void)ledger::VerifyLog(tiles, Signer().verifier(), &result);
  return 0;
}
