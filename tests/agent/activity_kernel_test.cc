// Activity capture on the real kernel: the programs attached to their
// tracepoints, processes run in a cgroup of the test's own as uids nobody
// else uses, and the records read back from the ring buffer and decoded as
// the agent sends them. Only records from the test's cgroup are looked at.
#include <bpf/bpf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <liburing.h>
#include <linux/capability.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/activity_capture.h"
#include "agent/boot_clock.h"
#include "agent/kernel_fs.h"
#include "agent/ring_reader.h"
#include "kernel_sandbox.h"
#include "schemas/activity_record.h"

namespace latch::agent {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kHolder = 5151;  // holds grant kGrant
constexpr uint32_t kOther = 5252;   // holds nothing
constexpr uint64_t kGrant = 77;
constexpr uint32_t kThrottle = 50;  // events per process per window

struct Record {
  record::ActivitySummary summary;
  nlohmann::json detail;
};

class ActivityKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LATCH_SKIP_UNLESS_KERNEL_TEST_CAN_RUN();
    ASSERT_EQ(CreateTestCgroup("latch-act-test", &cgroup_), "");
    ASSERT_TRUE(CgroupId(cgroup_, &cgroup_id_).ok());
    char tmpl[] = "/tmp/latch-act-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
    fs::create_directory(dir_ + "/watched");
    fs::permissions(dir_ + "/watched",
                    fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec);
    std::ofstream(dir_ + "/watched/secret") << "s";
    std::ofstream(dir_ + "/plain") << "p";

    ASSERT_TRUE(fs::create_directory(dir_ + "/bpffs"));
    ASSERT_EQ(::mount("bpf", (dir_ + "/bpffs").c_str(), "bpf", 0, "mode=0700"), 0);
    bpffs_mounted_ = true;
    ActivityOptions options;
    options.pin_dir = dir_ + "/bpffs/activity";
    options.path_prefixes = {dir_ + "/watched/"};
    options.throttle_events = kThrottle;
    options.throttle_window_ms = 60'000;  // one window for the whole test
    options.ring_bytes = 1u << 20;
    options.detach_after_ms = 0;  // detached as soon as nobody is watched
    Status s = ActivityCapture::Start(options, &capture_);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_NO_FATAL_FAILURE(OpenReader());
    ours_.insert(cgroup_id_);
    WatchEntry holder;
    holder.principal = {Principal::Kind::kUid, kHolder};
    holder.grant_id = kGrant;
    holder.not_after_boot_ns = NowBootNs() + 3'600'000'000'000ull;
    ASSERT_TRUE(capture_->SetWatched({holder}).ok());
  }

  // Reads the ring as the agent does, keeping the records of our cgroups.
  void OpenReader() {
    Status s = RingReader::Create(
        capture_->ring_fd(),
        [this](std::string_view raw) {
          std::string encoded;
          Record r;
          if (!record::EncodeActivityEvent(raw, &encoded).ok() ||
              !record::ViewActivityEvent(encoded, &r.summary, &r.detail).ok()) {
            return false;
          }
          if (ours_.count(r.detail["cgroup_id"].get<uint64_t>())) records_.push_back(r);
          return true;
        },
        &reader_);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  void TearDown() override {
    reader_.reset();
    capture_.reset();
    if (bpffs_mounted_) {
      Status s = ActivityCapture::Uninstall(dir_ + "/bpffs/activity");
      EXPECT_TRUE(s.ok()) << s.ToString();
      ::umount2((dir_ + "/bpffs").c_str(), MNT_DETACH);
    }
    if (!cgroup_.empty()) ::rmdir(cgroup_.c_str());
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // Runs `body` in a child that joined the test cgroup (or `cgroup`) as
  // `uid`; returns its pid.
  template <typename F>
  pid_t RunAs(uint32_t uid, F body, const std::string& cgroup = "") {
    pid_t pid = ::fork();
    if (pid == 0) {
      if (!JoinCgroupAs((cgroup.empty() ? cgroup_ : cgroup) + "/cgroup.procs", uid)) ::_exit(100);
      body();
      ::_exit(0);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    return pid;
  }

  std::vector<Record> Drain() {
    int n = 0;
    EXPECT_TRUE(reader_->Consume(&n).ok());
    EXPECT_EQ(reader_->malformed(), 0u);
    std::vector<Record> out;
    out.swap(records_);
    return out;
  }
  static std::vector<Record> Of(const std::vector<Record>& rs, pid_t pid,
                                const std::string& kind = "") {
    std::vector<Record> out;
    for (const Record& r : rs) {
      if (r.detail["tgid"].get<int>() == pid && (kind.empty() || r.summary.kind == kind)) {
        out.push_back(r);
      }
    }
    return out;
  }

  std::string cgroup_, dir_;
  uint64_t cgroup_id_ = 0;
  bool bpffs_mounted_ = false;
  std::set<uint64_t> ours_;  // cgroup ids whose records the test looks at
  std::unique_ptr<ActivityCapture> capture_;
  std::unique_ptr<RingReader> reader_;
  std::vector<Record> records_;
};

void ExecQuietly(const char* path, const char* const* argv) {
  int null = ::open("/dev/null", O_WRONLY);
  ::dup2(null, 1);
  ::execv(path, const_cast<char* const*>(argv));
  ::_exit(127);
}

TEST_F(ActivityKernelTest, AHoldersCommandIsRecordedWithItsArgumentsAndGrant) {
  const char* argv[] = {"echo", "latch-argv-1", "two words", nullptr};
  pid_t holder = RunAs(kHolder, [&] { ExecQuietly("/bin/echo", argv); });
  pid_t other = RunAs(kOther, [&] { ExecQuietly("/bin/echo", argv); });
  auto rs = Drain();

  auto exec = Of(rs, holder, "exec");
  ASSERT_EQ(exec.size(), 1u);
  EXPECT_EQ(exec[0].detail["path"], "/bin/echo");
  EXPECT_EQ(exec[0].detail["args"], nlohmann::json({"echo", "latch-argv-1", "two words"}));
  EXPECT_EQ(exec[0].detail["args_truncated"], false);
  EXPECT_EQ(exec[0].summary.grant_id, kGrant);
  EXPECT_EQ(exec[0].summary.uid, kHolder);
  auto exits = Of(rs, holder, "exit");
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].detail["status"], 0);
  EXPECT_EQ(exits[0].summary.grant_id, kGrant);

  // Nothing at all from someone without a grant.
  EXPECT_TRUE(Of(rs, other).empty());
}

TEST_F(ActivityKernelTest, LongArgumentsAreCutAndMarked) {
  std::string longer(2000, 'a');
  const char* argv[] = {"echo", longer.c_str(), nullptr};
  pid_t holder = RunAs(kHolder, [&] { ExecQuietly("/bin/echo", argv); });
  auto exec = Of(Drain(), holder, "exec");
  ASSERT_EQ(exec.size(), 1u);
  EXPECT_EQ(exec[0].detail["args_truncated"], true);
  auto args = exec[0].detail["args"];
  ASSERT_EQ(args.size(), 2u);
  EXPECT_EQ(args[0], "echo");
  EXPECT_GT(args[1].get<std::string>().size(), 400u);
  EXPECT_LT(args[1].get<std::string>().size(), longer.size());
}

TEST_F(ActivityKernelTest, WatchedPathsAreRecordedWithTheirResultOthersAreNot) {
  std::string secret = dir_ + "/watched/secret", missing = dir_ + "/watched/missing",
              plain = dir_ + "/plain";
  pid_t holder = RunAs(kHolder, [&] {
    int fd = ::open(secret.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) ::_exit(1);
    if (::open(missing.c_str(), O_RDONLY) >= 0) ::_exit(2);
    if (::open(plain.c_str(), O_RDONLY) < 0) ::_exit(3);
  });
  pid_t other = RunAs(kOther, [&] { (void)!::open(secret.c_str(), O_RDONLY); });
  auto rs = Drain();
  auto opens = Of(rs, holder, "open");
  ASSERT_EQ(opens.size(), 2u);
  EXPECT_EQ(opens[0].detail["path"], secret);
  EXPECT_GE(opens[0].detail["result"].get<int>(), 0);
  EXPECT_EQ(opens[0].detail["flags"].get<uint32_t>() & O_CLOEXEC, static_cast<uint32_t>(O_CLOEXEC));
  EXPECT_EQ(opens[0].summary.grant_id, kGrant);
  EXPECT_EQ(opens[1].detail["path"], missing);
  EXPECT_EQ(opens[1].detail["result"], -ENOENT);
  EXPECT_TRUE(Of(rs, other).empty());
}

TEST_F(ActivityKernelTest, ConnectAttemptsAreRecordedWithTheirOutcome) {
  uint16_t closed = FreeLoopbackPort();
  pid_t holder = RunAs(kHolder, [&] {
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = Loopback4(closed);
    if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) ::_exit(1);
  });
  auto connects = Of(Drain(), holder, "connect");
  ASSERT_EQ(connects.size(), 1u);
  EXPECT_EQ(connects[0].detail["result"], -ECONNREFUSED);
  EXPECT_EQ(connects[0].detail["port"], closed);
  EXPECT_EQ(connects[0].detail["family"], AF_INET);
  EXPECT_EQ(connects[0].detail["destination"], "00000000000000000000ffff7f000001");
}

TEST_F(ActivityKernelTest, PrivilegeChangesAreRecordedBeforeAndAfter) {
  // Watched through its cgroup this time: the child starts as root there.
  WatchEntry group;
  group.principal = {Principal::Kind::kCgroup, cgroup_id_};
  group.grant_id = 91;
  group.not_after_boot_ns = NowBootNs() + 3'600'000'000'000ull;
  ASSERT_TRUE(capture_->SetWatched({group}).ok());
  pid_t child = RunAs(0, [&] {
    // Drop CAP_NET_RAW from the effective set, then become kOther.
    __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2]{};
    if (::syscall(SYS_capget, &h, d) != 0) ::_exit(1);
    d[0].effective &= ~(1u << CAP_NET_RAW);
    if (::syscall(SYS_capset, &h, d) != 0) ::_exit(2);
    if (::setresuid(kOther, kOther, kOther) != 0) ::_exit(3);
  });
  auto creds = Of(Drain(), child, "credentials");
  ASSERT_EQ(creds.size(), 2u);
  const auto& cap = creds[0].detail;
  EXPECT_EQ(cap["syscall"], SYS_capset);
  EXPECT_EQ(cap["result"], 0);
  EXPECT_NE(cap["old"]["cap_effective"].get<uint64_t>() & (1ull << CAP_NET_RAW), 0u);
  EXPECT_EQ(cap["new"]["cap_effective"].get<uint64_t>() & (1ull << CAP_NET_RAW), 0u);
  const auto& uid = creds[1].detail;
  EXPECT_EQ(uid["syscall"], SYS_setresuid);
  EXPECT_EQ(uid["old"]["uid"], 0);
  EXPECT_EQ(uid["new"]["uid"], kOther);
  EXPECT_EQ(uid["new"]["euid"], kOther);
  EXPECT_EQ(creds[1].summary.grant_id, 91u);
}

TEST_F(ActivityKernelTest, AFloodIsThrottledAndTheSummaryAccountsForEveryEvent) {
  constexpr int kOpens = 1000;
  std::string secret = dir_ + "/watched/secret";
  std::array<uint64_t, LATCH_ACT_CTR_COUNT> before{}, after{};
  ASSERT_TRUE(capture_->ReadCounters(&before).ok());
  pid_t flood = RunAs(kHolder, [&] {
    for (int i = 0; i < kOpens; ++i) {
      int fd = ::open(secret.c_str(), O_RDONLY);
      if (fd >= 0) ::close(fd);
    }
  });
  ASSERT_TRUE(capture_->ReadCounters(&after).ok());
  auto rs = Drain();
  size_t delivered = Of(rs, flood, "open").size();
  auto summaries = Of(rs, flood, "throttle");
  ASSERT_EQ(summaries.size(), 1u);  // at its exit: everything it held back
  uint64_t suppressed = summaries[0].detail["suppressed"]["open"].get<uint64_t>();
  EXPECT_EQ(delivered, kThrottle);
  EXPECT_EQ(delivered + suppressed, static_cast<uint64_t>(kOpens));
  EXPECT_EQ(after[LATCH_ACT_CTR_SUPPRESSED + LATCH_ACT_OPEN] -
                before[LATCH_ACT_CTR_SUPPRESSED + LATCH_ACT_OPEN],
            suppressed);
  EXPECT_EQ(Of(rs, flood, "exit").size(), 1u);  // exits are never held back
}

TEST_F(ActivityKernelTest, WatchingFollowsTheGrantsExpiry) {
  WatchEntry brief;
  brief.principal = {Principal::Kind::kUid, kHolder};
  brief.grant_id = kGrant;
  brief.not_after_boot_ns = NowBootNs() + 300'000'000ull;  // 300 ms
  ASSERT_TRUE(capture_->SetWatched({brief}).ok());
  const char* argv[] = {"true", nullptr};
  pid_t during = RunAs(kHolder, [&] { ExecQuietly("/bin/true", argv); });
  ::usleep(400'000);
  pid_t after = RunAs(kHolder, [&] { ExecQuietly("/bin/true", argv); });
  auto rs = Drain();
  EXPECT_EQ(Of(rs, during, "exec").size(), 1u);
  EXPECT_TRUE(Of(rs, after).empty());  // the kernel stopped watching on time by itself
}

// An open by a relative path (after a chdir) is matched against the path of
// the file it opened: no way around a watched prefix by changing directory.
TEST_F(ActivityKernelTest, RelativeOpensAreMatchedByWhatTheyOpened) {
  std::string watched = dir_ + "/watched";
  pid_t holder = RunAs(kHolder, [&] {
    if (::chdir(watched.c_str()) != 0) ::_exit(1);
    if (::open("secret", O_RDONLY) < 0) ::_exit(2);
    if (::open("../plain", O_RDONLY) < 0) ::_exit(3);  // not watched
    int dir = ::open(watched.c_str(), O_RDONLY | O_DIRECTORY);
    if (::openat(dir, "secret", O_RDONLY) < 0) ::_exit(4);
  });
  auto opens = Of(Drain(), holder, "open");
  std::vector<std::string> paths;
  for (const auto& o : opens) paths.push_back(o.detail["path"]);
  // The directory itself (opened by its absolute path) is not under the
  // "<dir>/watched/" prefix; the two opens of secret are, resolved.
  EXPECT_EQ(paths, std::vector<std::string>({watched + "/secret", watched + "/secret"}));
}

// With nobody watched (watch = "grants", no grant live or to come) the
// syscall programs are not attached at all, so the host's syscalls pay
// nothing; they are back as soon as someone is watched.
TEST_F(ActivityKernelTest, SyscallProgramsAreAttachedOnlyWhileSomeoneIsWatched) {
  // Pinned links besides the two scheduler programs' (exec, exit).
  auto pinned_syscall_links = [&] {
    int n = 0;
    for (const auto& e : fs::directory_iterator(capture_->options().pin_dir)) {
      n += e.path().filename().string().rfind("link_", 0) == 0;
    }
    return n - 2;
  };
  EXPECT_TRUE(capture_->syscall_programs_attached());
  EXPECT_GT(pinned_syscall_links(), 0);
  WatchEntry lapsed;
  lapsed.principal = {Principal::Kind::kUid, kHolder};
  lapsed.grant_id = kGrant;
  lapsed.not_after_boot_ns = NowBootNs() - 1;  // ended: watches nobody
  ASSERT_TRUE(capture_->SetWatched({lapsed}).ok());
  EXPECT_FALSE(capture_->syscall_programs_attached());
  EXPECT_EQ(pinned_syscall_links(), 0);
  std::string secret = dir_ + "/watched/secret";
  pid_t unseen = RunAs(kHolder, [&] { (void)!::open(secret.c_str(), O_RDONLY); });

  WatchEntry holder = lapsed;
  holder.not_after_boot_ns = NowBootNs() + 60'000'000'000ull;
  ASSERT_TRUE(capture_->SetWatched({holder}).ok());
  EXPECT_TRUE(capture_->syscall_programs_attached());
  pid_t seen = RunAs(kHolder, [&] { (void)!::open(secret.c_str(), O_RDONLY); });
  auto rs = Drain();
  EXPECT_TRUE(Of(rs, unseen, "open").empty());
  EXPECT_EQ(Of(rs, seen, "open").size(), 1u);

  // Watch(): one holder added ahead of its grant (what the agent does before
  // a grant reaches the kernel): programs back, holder seen at once.
  ASSERT_TRUE(capture_->SetWatched({lapsed}).ok());
  EXPECT_FALSE(capture_->syscall_programs_attached());
  Status w = capture_->Watch(holder);
  ASSERT_TRUE(w.ok()) << w.ToString();
  EXPECT_TRUE(capture_->syscall_programs_attached());
  pid_t ahead = RunAs(kHolder, [&] { (void)!::open(secret.c_str(), O_RDONLY); });
  EXPECT_EQ(Of(Drain(), ahead, "open").size(), 1u);
}

// The agent's default: the syscall programs stay attached for a while after
// the last grant ends, so a grant that follows soon after does not wait for
// the kernel to finish detaching them; with nobody watched for that long,
// they go.
TEST_F(ActivityKernelTest, SyscallProgramsLingerAfterTheLastWatchEnds) {
  ActivityOptions o = capture_->options();
  o.detach_after_ms = 300;
  reader_.reset();
  capture_.reset();
  Status s = ActivityCapture::Start(o, &capture_);  // adopts the pinned capture
  ASSERT_TRUE(s.ok()) << s.ToString();
  WatchEntry holder;
  holder.principal = {Principal::Kind::kUid, kHolder};
  holder.grant_id = kGrant;
  holder.not_after_boot_ns = NowBootNs() + 60'000'000'000ull;
  ASSERT_TRUE(capture_->SetWatched({holder}).ok());
  ASSERT_TRUE(capture_->syscall_programs_attached());
  WatchEntry lapsed = holder;
  lapsed.not_after_boot_ns = NowBootNs() - 1;
  ASSERT_TRUE(capture_->SetWatched({lapsed}).ok());
  EXPECT_TRUE(capture_->syscall_programs_attached()) << "detached at once";
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  ASSERT_TRUE(capture_->SetWatched({lapsed}).ok());
  EXPECT_FALSE(capture_->syscall_programs_attached()) << "still attached after detach_after_ms";
}

// A setuid-root program run by a holder: its exec record shows the change
// (uid stays the holder's, euid becomes root's).
TEST_F(ActivityKernelTest, ASetuidProgramsPrivilegeChangeIsRecorded) {
  std::string program = dir_ + "/setuid-true";
  fs::copy_file("/bin/true", program);
  ASSERT_EQ(::chown(program.c_str(), 0, 0), 0);
  ASSERT_EQ(::chmod(program.c_str(), 04755), 0);
  const char* argv[] = {"setuid-true", nullptr};
  pid_t holder = RunAs(kHolder, [&] { ExecQuietly(program.c_str(), argv); });
  auto exec = Of(Drain(), holder, "exec");
  ASSERT_EQ(exec.size(), 1u);
  EXPECT_EQ(exec[0].detail["path"], program);
  EXPECT_EQ(exec[0].detail["uid"], kHolder);
  EXPECT_EQ(exec[0].detail["euid"], 0);
  EXPECT_EQ(exec[0].summary.grant_id, kGrant);
}

// watch = "cgroup": everything in the cgroup and below it, grant or not;
// nothing from a sibling.
TEST_F(ActivityKernelTest, CgroupModeWatchesTheCgroupAndItsDescendants) {
  std::string inner = cgroup_ + "/inner", sibling = cgroup_ + "-sibling";
  ASSERT_TRUE(fs::create_directory(inner));
  ASSERT_TRUE(fs::create_directory(sibling));
  uint64_t inner_id = 0, sibling_id = 0;
  ASSERT_TRUE(CgroupId(inner, &inner_id).ok());
  ASSERT_TRUE(CgroupId(sibling, &sibling_id).ok());
  ours_.insert(inner_id);
  ours_.insert(sibling_id);
  ActivityOptions options = capture_->options();
  options.mode = WatchMode::kCgroup;
  options.cgroup_dir = cgroup_;
  reader_.reset();
  capture_.reset();
  Status s = ActivityCapture::Start(options, &capture_);  // adopts, reconfigures
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_NO_FATAL_FAILURE(OpenReader());
  const char* argv[] = {"true", nullptr};
  pid_t top = RunAs(kOther, [&] { ExecQuietly("/bin/true", argv); });
  pid_t below = RunAs(
      kOther, [&] { ExecQuietly("/bin/true", argv); }, inner);
  pid_t beside = RunAs(
      kOther, [&] { ExecQuietly("/bin/true", argv); }, sibling);
  auto rs = Drain();
  ASSERT_EQ(Of(rs, top, "exec").size(), 1u);
  EXPECT_EQ(Of(rs, top, "exec")[0].summary.grant_id, 0u);  // watched without a grant
  EXPECT_EQ(Of(rs, below, "exec").size(), 1u);
  EXPECT_TRUE(Of(rs, beside).empty());
  ::rmdir(inner.c_str());
  ::rmdir(sibling.c_str());
}

// Issue 16: two agents on one kernel (hosts in namespaces, each guarding its
// own cgroup) record only their own host's tasks: a grant holder's uid is
// watched inside the guard's cgroup and not in the other host's, and even
// watch = "all" stays inside it.
TEST_F(ActivityKernelTest, CaptureRecordsOnlyTasksInsideTheGuardsCgroup) {
  std::string here = cgroup_ + "/host-a", there = cgroup_ + "/host-b";
  ASSERT_TRUE(fs::create_directory(here));
  ASSERT_TRUE(fs::create_directory(there));
  uint64_t here_id = 0, there_id = 0;
  ASSERT_TRUE(CgroupId(here, &here_id).ok());
  ASSERT_TRUE(CgroupId(there, &there_id).ok());
  ours_.insert(here_id);
  ours_.insert(there_id);
  for (WatchMode mode : {WatchMode::kGrants, WatchMode::kAll}) {
    ActivityOptions options = capture_->options();
    options.mode = mode;
    options.scope_cgroup_dir = here;
    reader_.reset();
    capture_.reset();
    Status s = ActivityCapture::Start(options, &capture_);  // adopts, reconfigures
    ASSERT_TRUE(s.ok()) << s.ToString();
    WatchEntry holder;
    holder.principal = {Principal::Kind::kUid, kHolder};
    holder.grant_id = kGrant;
    holder.not_after_boot_ns = NowBootNs() + 3'600'000'000'000ull;
    ASSERT_TRUE(capture_->SetWatched({holder}).ok());
    ASSERT_NO_FATAL_FAILURE(OpenReader());
    const char* argv[] = {"true", nullptr};
    pid_t mine = RunAs(
        kHolder, [&] { ExecQuietly("/bin/true", argv); }, here);
    pid_t theirs = RunAs(
        kHolder, [&] { ExecQuietly("/bin/true", argv); }, there);
    auto rs = Drain();
    ASSERT_EQ(Of(rs, mine, "exec").size(), 1u) << WatchModeName(mode);
    EXPECT_EQ(Of(rs, mine, "exec")[0].summary.grant_id, kGrant);
    EXPECT_TRUE(Of(rs, theirs).empty()) << WatchModeName(mode);
  }
  reader_.reset();
  capture_.reset();
  ::rmdir(here.c_str());
  ::rmdir(there.c_str());
}

// Capture is pinned: the process that set it up can go (an agent killed or
// restarted) and capture goes on into the pinned ring; the next start adopts
// the running programs instead of attaching them again.
TEST_F(ActivityKernelTest, CaptureOutlivesItsProcessAndIsAdopted) {
  ActivityOptions options = capture_->options();
  reader_.reset();
  capture_.reset();  // as if the agent died
  const char* argv[] = {"true", "while-no-agent", nullptr};
  pid_t meanwhile = RunAs(kHolder, [&] { ExecQuietly("/bin/true", argv); });
  Status s = ActivityCapture::Start(options, &capture_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_GT(capture_->adopted_links(), 0);
  EXPECT_EQ(capture_->replaced_links(), 0);
  ASSERT_NO_FATAL_FAILURE(OpenReader());
  auto exec = Of(Drain(), meanwhile, "exec");
  ASSERT_EQ(exec.size(), 1u);
  EXPECT_EQ(exec[0].detail["args"][1], "while-no-agent");
}

// One operation through io_uring, waited for: its result (or -1000 - errno
// if it could not be submitted).
template <typename Prep>
int Through(io_uring* ring, Prep prep) {
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  if (sqe == nullptr) return -1000;
  prep(sqe);
  int n = io_uring_submit(ring);
  if (n != 1) return -1000 + n;
  io_uring_cqe* cqe = nullptr;
  int w = io_uring_wait_cqe(ring, &cqe);
  if (w != 0) return -1000 + w;
  int res = cqe->res;
  io_uring_cqe_seen(ring, cqe);
  return res;
}

// Issue 13.6: opens and connects submitted through io_uring are recorded as
// the system calls are (target, result, the grant), marked as io_uring; the
// instance's setup is recorded; and everything submitted is counted by
// operation in a summary when the process ends. Before, none of it was seen.
TEST_F(ActivityKernelTest, OpensAndConnectsThroughIoUringAreRecorded) {
  if (!capture_->io_uring_seen()) GTEST_FAIL() << "this kernel has no io_uring tracepoints";
  std::string secret = dir_ + "/watched/secret", missing = dir_ + "/watched/missing",
              plain = dir_ + "/plain";
  uint16_t closed = FreeLoopbackPort();
  auto body = [&] {
    io_uring ring;
    if (io_uring_queue_init(8, &ring, 0) != 0) ::_exit(10);
    if (Through(&ring, [&](io_uring_sqe* q) {
          io_uring_prep_openat(q, AT_FDCWD, secret.c_str(), O_RDONLY | O_CLOEXEC, 0);
        }) < 0) {
      ::_exit(11);
    }
    if (Through(&ring, [&](io_uring_sqe* q) {
          io_uring_prep_openat(q, AT_FDCWD, missing.c_str(), O_RDONLY, 0);
        }) != -ENOENT) {
      ::_exit(12);
    }
    if (Through(&ring, [&](io_uring_sqe* q) {
          io_uring_prep_openat(q, AT_FDCWD, plain.c_str(), O_RDONLY, 0);
        }) < 0) {
      ::_exit(13);
    }
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = Loopback4(closed);
    if (Through(&ring, [&](io_uring_sqe* q) {
          io_uring_prep_connect(q, s, reinterpret_cast<sockaddr*>(&a), sizeof(a));
        }) != -ECONNREFUSED) {
      ::_exit(14);
    }
    for (int i = 0; i < 3; ++i) {
      if (Through(&ring, [](io_uring_sqe* q) { io_uring_prep_nop(q); }) != 0) ::_exit(15);
    }
  };
  pid_t holder = RunAs(kHolder, body);
  pid_t other = RunAs(kOther, body);
  auto rs = Drain();

  auto setup = Of(rs, holder, "io_uring_setup");
  ASSERT_EQ(setup.size(), 1u);
  EXPECT_EQ(setup[0].detail["sq_entries"], 8);
  EXPECT_GE(setup[0].detail["fd"].get<int>(), 0);
  EXPECT_EQ(setup[0].summary.grant_id, kGrant);

  auto opens = Of(rs, holder, "open");
  ASSERT_EQ(opens.size(), 2u);  // the unwatched path is not recorded
  EXPECT_EQ(opens[0].detail["path"], secret);
  EXPECT_GE(opens[0].detail["result"].get<int>(), 0);
  EXPECT_EQ(opens[0].detail["flags"].get<uint32_t>() & O_CLOEXEC, static_cast<uint32_t>(O_CLOEXEC));
  EXPECT_EQ(opens[0].detail["via"], "io_uring");
  EXPECT_EQ(opens[0].summary.grant_id, kGrant);
  EXPECT_EQ(opens[0].summary.uid, kHolder);
  EXPECT_EQ(opens[1].detail["path"], missing);
  EXPECT_EQ(opens[1].detail["result"], -ENOENT);
  EXPECT_EQ(opens[1].detail["via"], "io_uring");

  auto connects = Of(rs, holder, "connect");
  ASSERT_EQ(connects.size(), 1u);
  EXPECT_EQ(connects[0].detail["result"], -ECONNREFUSED);
  EXPECT_EQ(connects[0].detail["port"], closed);
  EXPECT_EQ(connects[0].detail["destination"], "00000000000000000000ffff7f000001");
  EXPECT_EQ(connects[0].detail["via"], "io_uring");

  auto ops = Of(rs, holder, "io_uring_ops");
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(ops[0].detail["submitted"],
            nlohmann::json({{"openat", 3}, {"connect", 1}, {"nop", 3}}));
  EXPECT_LE(ops[0].detail["window_start_ns"].get<uint64_t>(),
            ops[0].detail["window_end_ns"].get<uint64_t>());

  // Nothing at all from someone without a grant.
  EXPECT_TRUE(Of(rs, other).empty());
}

// A relative path through io_uring (to a directory fd) is matched, like the
// system call's, by the path of what it opened.
TEST_F(ActivityKernelTest, RelativeOpensThroughIoUringAreMatchedByWhatTheyOpened) {
  if (!capture_->io_uring_seen()) GTEST_FAIL() << "this kernel has no io_uring tracepoints";
  std::string watched = dir_ + "/watched";
  pid_t holder = RunAs(kHolder, [&] {
    io_uring ring;
    if (io_uring_queue_init(4, &ring, 0) != 0) ::_exit(10);
    int dir = ::open(watched.c_str(), O_RDONLY | O_DIRECTORY);
    if (Through(&ring, [&](io_uring_sqe* q) {
          io_uring_prep_openat(q, dir, "secret", O_RDONLY, 0);
        }) < 0) {
      ::_exit(11);
    }
    if (Through(&ring, [&](io_uring_sqe* q) {
          io_uring_prep_openat(q, dir, "../plain", O_RDONLY, 0);
        }) < 0) {
      ::_exit(12);
    }
  });
  auto opens = Of(Drain(), holder, "open");
  ASSERT_EQ(opens.size(), 1u);
  EXPECT_EQ(opens[0].detail["path"], watched + "/secret");
  EXPECT_EQ(opens[0].detail["via"], "io_uring");
}

// An upgrade that changes a map's layout (as issue 13.6's new record kinds
// did): the older agent's pinned maps cannot be reused, so the capture is
// installed afresh instead of the agent failing to start.
TEST_F(ActivityKernelTest, MapsPinnedInAnotherLayoutAreReplaced) {
  ActivityOptions options = capture_->options();
  reader_.reset();
  capture_.reset();
  ASSERT_TRUE(ActivityCapture::Uninstall(options.pin_dir).ok());
  ASSERT_TRUE(fs::create_directory(options.pin_dir));
  // An older agent's throttle state: a smaller value.
  int old =
      bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "latch_throttle", sizeof(__u32), 48, 16384, nullptr);
  ASSERT_GE(old, 0);
  ASSERT_EQ(bpf_obj_pin(old, (options.pin_dir + "/latch_throttle").c_str()), 0);
  ::close(old);
  Status s = ActivityCapture::Start(options, &capture_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(capture_->reinstalled());
  ASSERT_NO_FATAL_FAILURE(OpenReader());
  WatchEntry holder;
  holder.principal = {Principal::Kind::kUid, kHolder};
  holder.grant_id = kGrant;
  holder.not_after_boot_ns = NowBootNs() + 3'600'000'000'000ull;
  ASSERT_TRUE(capture_->SetWatched({holder}).ok());
  const char* argv[] = {"true", nullptr};
  pid_t after = RunAs(kHolder, [&] { ExecQuietly("/bin/true", argv); });
  EXPECT_EQ(Of(Drain(), after, "exec").size(), 1u);

  // The same layout is adopted as before, not replaced.
  reader_.reset();
  capture_.reset();
  ASSERT_TRUE(ActivityCapture::Start(options, &capture_).ok());
  EXPECT_FALSE(capture_->reinstalled());
  EXPECT_GT(capture_->adopted_links(), 0);
}

TEST(WatchEntries, OnePerPrincipalCoveringItsGrants) {
  std::vector<KernelGrant> grants = {
      {1, {Principal::Kind::kUid, 10}, 5, 100, 200},
      {2, {Principal::Kind::kUid, 10}, 6, 150, 300},  // overlaps: the union
      {3, {Principal::Kind::kUid, 11}, 5, 100, 200},
      {4, {Principal::Kind::kUid, 11}, 5, 500, 600},  // after a gap: the later one
      {5, {Principal::Kind::kCgroup, 10}, 5, 0, 50},
  };
  auto entries = WatchEntriesFor(grants);
  ASSERT_EQ(entries.size(), 3u);
  std::map<std::pair<uint32_t, uint64_t>, WatchEntry> by;
  for (auto& e : entries) by[{static_cast<uint32_t>(e.principal.kind), e.principal.id}] = e;
  auto u10 = by[{LATCH_PRINCIPAL_UID, 10}];
  EXPECT_EQ(u10.grant_id, 2u);
  EXPECT_EQ(u10.not_before_boot_ns, 100u);
  EXPECT_EQ(u10.not_after_boot_ns, 300u);
  auto u11 = by[{LATCH_PRINCIPAL_UID, 11}];
  EXPECT_EQ(u11.grant_id, 4u);
  EXPECT_EQ(u11.not_before_boot_ns, 500u);
  auto c10 = by[std::make_pair(uint32_t{LATCH_PRINCIPAL_CGROUP}, uint64_t{10})];
  EXPECT_EQ(c10.grant_id, 5u);
}

}  // namespace
}  // namespace latch::agent
