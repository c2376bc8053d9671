// Mutex and MutexLock: std::mutex with clang's thread-safety annotations, so
// that state shared across threads names its lock (LATCH_GUARDED_BY) and the
// compiler checks every access (-Wthread-safety, on in clang builds: CI's
// fuzz build compiles the collector with it). Under g++ the annotations are
// empty and these are a plain mutex and lock guard.
#pragma once

#include <mutex>

#if defined(__clang__)
#define LATCH_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define LATCH_THREAD_ANNOTATION(x)
#endif

#define LATCH_CAPABILITY(name) LATCH_THREAD_ANNOTATION(capability(name))
#define LATCH_SCOPED_CAPABILITY LATCH_THREAD_ANNOTATION(scoped_lockable)
#define LATCH_GUARDED_BY(mu) LATCH_THREAD_ANNOTATION(guarded_by(mu))
#define LATCH_REQUIRES(...) LATCH_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define LATCH_ACQUIRE(...) LATCH_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define LATCH_RELEASE(...) LATCH_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define LATCH_EXCLUDES(...) LATCH_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))

namespace latch {

class LATCH_CAPABILITY("mutex") Mutex {
 public:
  void lock() LATCH_ACQUIRE() { mu_.lock(); }
  void unlock() LATCH_RELEASE() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

// Holds `mu` for its scope.
class LATCH_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) LATCH_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() LATCH_RELEASE() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

}  // namespace latch
