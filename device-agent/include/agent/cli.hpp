// device-agent's command line (DESIGN.md §9): init, install, status, rollback, recover, cancel, gc, fsck.
// Exit codes: 0 success, 1 the operation failed (stderr says why), 2 usage error.
#pragma once

namespace tug::agent {

int Main(int argc, char** argv);

}  // namespace tug::agent
