// Host ids name a host in the ledger, in grants and on the channel. They are
// hostname-like: 1 to 253 of [A-Za-z0-9._-], starting with a letter or a
// digit. The collector's channel relies on it: a peer that is enrolling is
// named "enrol:<key>" internally, which no host id can be.
#pragma once

#include <string_view>

namespace latch::schema {

bool IsHostId(std::string_view id);
// What a host id must look like, for error messages.
inline constexpr const char* kHostIdRule =
    "1 to 253 letters, digits, '.', '_' or '-', starting with a letter or digit";

}  // namespace latch::schema
