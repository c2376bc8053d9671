// Test helper: the small workflow policy the collector tests share. Resource
// "db" (id 9, 10.1.2.3:5432) on host-a; tess (uid 4000, group dev) may ask
// for it for up to an hour; ann (dba) approves, one approval; otto (ops)
// administers agents.
#pragma once

#include <fstream>
#include <string>

namespace latch::testing {

inline void WriteTestPolicy(const std::string& path) {
  std::ofstream(path)
      << "auditor_groups = [\"security\"]\n"
      << "admin_groups = [\"ops\"]\n"
      << "[[host]]\nid = \"host-a\"\n"
      << "[[resource]]\nname = \"db\"\nid = 9\ndestinations = [\"10.1.2.3\"]\nports = \"5432\"\n"
      << "hosts = [\"host-a\"]\n"
      << "[[identity]]\nname = \"tess\"\ngroups = [\"dev\"]\nuid = 4000\n"
      << "[[identity]]\nname = \"ann\"\ngroups = [\"dba\"]\n"
      // rob requests too; neta approves only dns; sam audits.
      << "[[identity]]\nname = \"rob\"\ngroups = [\"dev\"]\nuid = 4001\n"
      << "[[identity]]\nname = \"neta\"\ngroups = [\"netops\"]\n"
      << "[[identity]]\nname = \"sam\"\ngroups = [\"security\"]\n"
      // otto enrols and removes agents, and nothing else.
      << "[[identity]]\nname = \"otto\"\ngroups = [\"ops\"]\n"
      << "[[resource]]\nname = \"dns\"\nid = 10\ndestinations = [\"10.1.2.53\"]\nports = \"53\"\n"
      << "protocol = \"udp\"\nhosts = [\"host-a\"]\n"
      << "[[request_rule]]\nresources = [\"db\"]\nrequesters = [\"tess\", \"rob\"]\nmax_duration = "
         "\"1h\"\n"
      << "[[approval_rule]]\nresources = [\"db\"]\napprover_groups = [\"dba\"]\n"
      << "[[approval_rule]]\nresources = [\"dns\"]\napprover_groups = [\"netops\"]\n";
}

}  // namespace latch::testing
