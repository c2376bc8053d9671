// What latchctl prints of text from outside (issue 14: a reason with a newline
// drew a fake table row; a process name with ESC [2K CR rewrote a deny as an
// allow).
#include "collector/tools/terminal_text.h"

#include <gtest/gtest.h>

namespace latch::tools {
namespace {

TEST(TerminalText, ControlsAndOverridesAreShownNotObeyed) {
  EXPECT_EQ(TerminalText("nightly job"), "nightly job");
  EXPECT_EQ(TerminalText("Grüße, 日本"), "Grüße, 日本");  // ordinary text unchanged
  EXPECT_EQ(TerminalText("ok\n12 pending bob"), "ok\\x0a12 pending bob");
  EXPECT_EQ(TerminalText("\x1b[2K\rallow psql"), "\\x1b[2K\\x0dallow psql");
  EXPECT_EQ(TerminalText(std::string("a\0b", 3)), "a\\x00b");  // text after a NUL stays
  EXPECT_EQ(TerminalText("\x7f"), "\\x7f");
  EXPECT_EQ(TerminalText("\xc2\x9b"
                         "31m"),
            "\\x9b31m");  // C1 CSI
  EXPECT_EQ(TerminalText("abc\xe2\x80\xae"
                         "fed"),
            "abc\\u{202e}fed");                            // right-to-left override
  EXPECT_EQ(TerminalText("\xe2\x81\xa6x"), "\\u{2066}x");  // isolate
  EXPECT_EQ(TerminalText("\xff\xfe"), "\\xff\\xfe");       // not UTF-8
  EXPECT_EQ(TerminalText("\xe2\x82"), "\\xe2\\x82");       // cut short
  EXPECT_EQ(TerminalText("C:\\x41"), "C:\\\\x41");         // a backslash cannot fake an escape
}

}  // namespace
}  // namespace latch::tools
