// LossyDelivery: one agent's channel to a collector over a LossyLink, both
// in this process (the collector's thread in one namespace, the agent's in the
// other), the agent fed decision records from memory at a steady rate as its
// rings would. What it measures is what issue 13.5 asks: how many records the
// collector received for each one made (the resend volume), the sessions the
// agent started and why, and how long the last records took to be
// acknowledged. channel_bench (part l) prints it; lossy_link_test asserts on it.
#pragma once

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

#include "agent/boot_clock.h"
#include "agent/checkpoint_witness.h"
#include "agent/collector_link.h"
#include "agent/spool.h"
#include "agent/spool_sink.h"
#include "collector/ingest/collector_server.h"
#include "lossy_link.h"
#include "schemas/curve_key.h"
#include "schemas/event_record.h"

namespace latch::testing {

struct LossyDeliveryResult {
  std::string error;  // empty when the run could be made
  uint64_t made = 0, acknowledged = 0;
  double drain_secs = -1;  // from the last record made to the last acknowledged (-1: never)
  uint64_t appended = 0, duplicate = 0, out_of_order = 0;  // at the collector
  agent::CollectorLinkCounters link;
  std::map<std::string, int> sessions_by_reason;  // from the agent's log
  uint64_t packets_forwarded = 0, packets_dropped = 0;

  uint64_t received() const { return appended + duplicate + out_of_order; }
};

// `rate` records/s for `seconds`, then until all are acknowledged (at most
// `drain_limit_secs` more). `dir` is a scratch directory the caller owns.
inline LossyDeliveryResult RunLossyDelivery(const std::string& dir, int seconds, int rate,
                                            LossyLink::Options link_options,
                                            int drain_limit_secs = 300) {
  LossyDeliveryResult out;
  LossyLink lossy;
  out.error = lossy.Create(std::to_string(::getpid()), link_options);
  if (!out.error.empty()) return out;
  schema::CurveKeyPair agent_key;
  Status s = schema::LoadOrCreateCurveKey(dir + "/agent.key", &agent_key);
  if (!s.ok()) {
    out.error = s.ToString();
    return out;
  }
  const std::string endpoint = std::string("tcp://") + LossyLink::kAddrB + ":7711";

  // The collector, on a thread that moved into namespace b first (its
  // sockets and threads are made there).
  std::mutex mu;
  std::condition_variable cv;
  bool up = false, done = false;
  std::string server_key, ledger_vkey;
  std::thread collector_thread([&] {
    std::unique_lock<std::mutex> lock(mu);
    std::unique_ptr<collector::CollectorServer> server;
    if (!LossyLink::EnterNetns(lossy.b())) {
      out.error = "entering the collector's namespace";
    } else {
      collector::CollectorConfig c;
      c.data_dir = dir + "/collector";
      c.origin = "lossy.example/ledger";
      c.endpoints = {endpoint};
      c.agents[agent_key.public_z85] = "lossy-host";
      Status opened = collector::CollectorServer::Open(c, &server);
      if (!opened.ok()) out.error = opened.ToString();
    }
    std::thread run;
    if (server) {
      server_key = server->curve_public_key();
      ledger_vkey = server->ledger_vkey();
      run = std::thread([&] { (void)server->Run(); });
    }
    up = true;
    cv.notify_all();
    cv.wait(lock, [&] { return done; });
    if (server) {
      out.appended = server->counters().records_appended;
      out.duplicate = server->counters().records_duplicate;
      out.out_of_order = server->counters().records_out_of_order;
      server->Stop();
      run.join();
    }
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return up; });
  }

  // The agent's pieces, on a thread in namespace a.
  std::string link_log;
  if (out.error.empty()) {
    std::thread agent_thread([&] {
      if (!LossyLink::EnterNetns(lossy.a())) {
        out.error = "entering the agent's namespace";
        return;
      }
      agent::SpoolOptions so;
      so.dir = dir + "/spool";
      std::unique_ptr<agent::Spool> spool;
      tlog::NoteVerifier ledger_key;
      std::unique_ptr<agent::CheckpointWitness> witness;
      Status st = agent::Spool::Open(so, std::string(16, '\x07'), &spool);
      if (st.ok()) st = tlog::NoteVerifier::Parse(ledger_vkey, &ledger_key);
      if (st.ok()) st = agent::CheckpointWitness::Open(dir + "/checkpoint", ledger_key, &witness);
      if (!st.ok()) {
        out.error = st.ToString();
        return;
      }
      agent::SpoolSink sink(*spool);
      boost::asio::io_context io;
      agent::CollectorLinkOptions lo;  // the agent's defaults
      lo.endpoints = {endpoint};
      lo.server_public_key = server_key;
      lo.key = agent_key;
      lo.host_id = "lossy-host";
      std::ostringstream log_text;
      logging::Logger log("lossy-agent", &log_text);
      agent::CollectorLink link(
          io, lo, *spool, *witness, [] { return uint64_t{0}; },
          [](schema::SignedGrantSet::Reader) {}, log);
      const uint64_t total = static_cast<uint64_t>(rate) * seconds;
      using Clock = std::chrono::steady_clock;
      auto secs = [](Clock::time_point t) {
        return std::chrono::duration<double>(Clock::now() - t).count();
      };
      auto start = Clock::now(), stopped_making = Clock::time_point{};
      boost::asio::steady_timer timer(io);
      std::function<void()> step = [&] {
        // As the daemon does: what the rings gave since the last drain,
        // flushed, pumped.
        uint64_t due = std::min<uint64_t>(total, static_cast<uint64_t>(secs(start) * rate));
        while (out.made < due) {
          latch_decision_event e{};
          e.ktime_boot_ns = agent::NowBootNs();
          e.pid = e.tgid = 4242;
          e.uid = 1000;
          std::memcpy(e.comm, "psql", 4);
          e.family = 2;
          e.protocol = 6;
          e.port = 5432;
          e.verdict = LATCH_VERDICT_DENY;
          e.hook = LATCH_HOOK_CONNECT4;
          e.addr[15] = static_cast<uint8_t>(out.made++);
          sink.AddEvent(e);
        }
        Status flushed = sink.Flush();
        if (!flushed.ok()) {
          out.error = flushed.ToString();
          io.stop();
          return;
        }
        link.Pump();
        if (out.made == total && stopped_making == Clock::time_point{}) {
          stopped_making = Clock::now();
        }
        if (link.counters().records_acknowledged >= total) {
          out.drain_secs = secs(stopped_making);
          io.stop();
          return;
        }
        if (secs(start) > seconds + drain_limit_secs) {
          io.stop();  // given up: the figures say how far it got
          return;
        }
        timer.expires_after(std::chrono::milliseconds(10));
        timer.async_wait([&](const boost::system::error_code& ec) {
          if (!ec) step();
        });
      };
      Status started = link.Start();
      if (!started.ok()) {
        out.error = started.ToString();
        return;
      }
      step();
      io.run();
      out.link = link.counters();
      out.acknowledged = out.link.records_acknowledged;
      link_log = log_text.str();
    });
    agent_thread.join();
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    done = true;
  }
  cv.notify_all();
  collector_thread.join();

  if (std::getenv("LATCH_LOSSY_LOG") != nullptr) std::fputs(link_log.c_str(), stderr);
  for (size_t at = 0; (at = link_log.find("why=\"", at)) != std::string::npos;) {
    at += 5;
    std::string reason = link_log.substr(at, link_log.find('"', at) - at);
    if (reason.rfind("consistency proof from size", 0) == 0) {
      reason = "consistency proof from another size";
    }
    ++out.sessions_by_reason[reason];
  }
  out.packets_forwarded = lossy.forwarded();
  out.packets_dropped = lossy.dropped();
  return out;
}

}  // namespace latch::testing
