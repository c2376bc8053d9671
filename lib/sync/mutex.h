// Mutex and MutexLock: std::mutex with clang's thread-safety annotations, so
// that state shared across threads names its lock (LATCH_GUARDED_BY) and the
// compiler checks every access (-Wthread-safety, on in clang builds: CI's
// fuzz build compiles the collector with it). Under g++ the annotations are
// empty and these are a plain mutex and lock guard.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define LATCH_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define LATCH_THREAD_ANNOTATION(x)
#endif

#define LATCH_CAPABILITY(name) LATCH_THREAD_ANNOTATION(capability(name))
#define LATCH_SCOPED_CAPABILITY LATCH_THREAD_ANNOTATION(scoped_lockable)
#define LATCH_GUARDED_BY(mu) LATCH_THREAD_ANNOTATION(guarded_by(mu))
// What a pointer points to is guarded by `mu` (the pointer itself is not).
#define LATCH_PT_GUARDED_BY(mu) LATCH_THREAD_ANNOTATION(pt_guarded_by(mu))
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

// A condition variable waited on with a Mutex held (condition_variable_any:
// it unlocks and relocks the Mutex itself, so waiting keeps the annotation
// that `mu` is held before and after).
class CondVar {
 public:
  void Wait(Mutex& mu) LATCH_REQUIRES(mu) { cv_.wait(mu); }
  // False if `timeout` passed without a signal (or spuriously).
  template <class Rep, class Period>
  bool WaitFor(Mutex& mu, std::chrono::duration<Rep, Period> timeout) LATCH_REQUIRES(mu) {
    return cv_.wait_for(mu, timeout) == std::cv_status::no_timeout;
  }
  template <class Clock, class Duration>
  bool WaitUntil(Mutex& mu, std::chrono::time_point<Clock, Duration> deadline) LATCH_REQUIRES(mu) {
    return cv_.wait_until(mu, deadline) == std::cv_status::no_timeout;
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable_any cv_;
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
