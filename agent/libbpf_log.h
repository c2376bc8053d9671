// libbpf's own messages: warnings reach stderr (prefixed "libbpf: "), its
// informational chatter does not. Every loader of BPF objects installs it.
#pragma once

namespace latch::agent {

void RouteLibbpfWarningsToStderr();

}  // namespace latch::agent
