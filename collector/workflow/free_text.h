// Free text people write into the workflow (a request's reason, a review's
// comment, a revocation's reason): the ledger keeps it for ever and other
// people's terminals show it. Reasons with a newline drew fake table rows in
// latchctl, and a reason of one no-break space passed reason_required
// (issue 14).
#pragma once

#include <cstddef>
#include <string_view>

#include "lib/status/status.h"

namespace latch::workflow {

constexpr size_t kMaxFreeTextBytes = 4096;

// Well-formed UTF-8 of at most kMaxFreeTextBytes, with no control characters
// (C0 including newline and tab, DEL, C1) and no bidirectional overrides or
// isolates. InvalidArgument naming `what` otherwise.
Status CheckFreeText(std::string_view text, const char* what);

// Nothing but whitespace and invisible characters (spaces of every width,
// U+00A0, U+200B, U+FEFF, ...): no reason at all.
bool IsBlank(std::string_view text);

}  // namespace latch::workflow
