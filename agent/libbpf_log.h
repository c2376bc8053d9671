// libbpf's messages go to the agent's log: its warnings at level warn, its
// informational and debug chatter (the verifier's log among them) at level
// debug, shown with --log-level debug. Every loader of BPF objects installs
// it.
#pragma once

namespace latch::agent {

void RouteLibbpfMessagesToLog();

}  // namespace latch::agent
