#include "schemas/curve_key.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstdint>
#include <fstream>
#include <sstream>

namespace latch::schema {

bool IsCurveKey(const std::string& key) {
  if (key.size() != 40) return false;
  uint8_t raw[32];
  return zmq_z85_decode(raw, key.c_str()) != nullptr;
}

Status LoadOrCreateCurveKey(const std::string& path, CurveKeyPair* out) {
  std::ifstream in(path);
  if (in) {
    std::string pub, sec;
    std::getline(in, pub);
    std::getline(in, sec);
    if (!IsCurveKey(pub) || !IsCurveKey(sec)) {
      return Status::Corruption(path + " is not a CURVE key file (two Z85 lines)");
    }
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
      return Status::FailedPrecondition(path +
                                        " holds a secret key and must not be readable by "
                                        "group or others (chmod 600)");
    }
    *out = {pub, sec};
    return Status::Ok();
  }
  char pub[41], sec[41];
  if (zmq_curve_keypair(pub, sec) != 0) {
    return Status::FailedPrecondition("libzmq cannot make CURVE keys (built without CURVE?)");
  }
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno("creating " + path, errno);
  std::string text = std::string(pub) + "\n" + sec + "\n";
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
            ::fsync(fd) == 0;
  int saved = errno;
  ::close(fd);
  if (!ok) return Status::FromErrno("writing " + path, saved);
  *out = {pub, sec};
  return Status::Ok();
}

}  // namespace latch::schema
