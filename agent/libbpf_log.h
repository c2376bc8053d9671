// libbpf's own messages: warnings reach stderr (prefixed "libbpf: "), its
// informational chatter does not, unless LATCH_LIBBPF_DEBUG is set in the
// environment (then everything, the verifier's log included: what to look at
// when a program does not load). Every loader of BPF objects installs it.
#pragma once

namespace latch::agent {

void RouteLibbpfWarningsToStderr();

}  // namespace latch::agent
