// Standard base64 (RFC 4648 section 4, with padding), as signed notes,
// checkpoints and proofs use it. Decoding is strict: it accepts only the
// canonical encoding, so one value has exactly one text form.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace latch::tlog {

std::string Base64Encode(std::span<const uint8_t> data);
std::optional<std::vector<uint8_t>> Base64Decode(std::string_view text);

}  // namespace latch::tlog
