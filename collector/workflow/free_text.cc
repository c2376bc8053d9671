#include "collector/workflow/free_text.h"

#include <cstdint>
#include <string>

#include "lib/text/utf8.h"

namespace latch::workflow {
namespace {

bool Invisible(uint32_t cp) {
  return cp == 0x20 || (cp >= 0x09 && cp <= 0x0d) || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
         cp == 0x180e || (cp >= 0x2000 && cp <= 0x200d) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202f || cp == 0x205f || cp == 0x2060 || cp == 0x3000 || cp == 0xfeff;
}

}  // namespace

Status CheckFreeText(std::string_view text, const char* what) {
  if (text.size() > kMaxFreeTextBytes) {
    return Status::InvalidArgument(std::string(what) + " is over " +
                                   std::to_string(kMaxFreeTextBytes) + " bytes");
  }
  uint32_t cp = 0;
  for (size_t i = 0; i < text.size();) {
    size_t n = text::DecodeUtf8(text, i, &cp);
    if (n == 0) return Status::InvalidArgument(std::string(what) + " is not UTF-8");
    if (text::IsControl(cp)) {
      return Status::InvalidArgument(std::string(what) +
                                     " holds a control character (one line of text, please)");
    }
    if (text::IsBidiControl(cp)) {
      return Status::InvalidArgument(std::string(what) + " holds a bidirectional override");
    }
    i += n;
  }
  return Status::Ok();
}

bool IsBlank(std::string_view text) {
  uint32_t cp = 0;
  for (size_t i = 0; i < text.size();) {
    size_t n = text::DecodeUtf8(text, i, &cp);
    if (n == 0 || !Invisible(cp)) return false;
    i += n;
  }
  return true;
}

}  // namespace latch::workflow
