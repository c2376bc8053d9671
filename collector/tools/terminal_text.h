// TerminalText: what latchctl prints of text it did not write (reasons,
// comments, process names, hosts, paths, error messages). A terminal obeys
// control characters: a reason with "\n" drew a fake table row, and a process
// name of "\x1b[2K\rallow psql" made a deny read as an allow (issue 14). Here
// C0 and C1 controls and DEL become \xNN, bidirectional overrides and
// isolates become \u{XXXX}, and bytes that are not UTF-8 become \xNN; the
// rest is kept as it is, so ordinary text reads unchanged.
#pragma once

#include <string>
#include <string_view>

namespace latch::tools {

std::string TerminalText(std::string_view text);

}  // namespace latch::tools
