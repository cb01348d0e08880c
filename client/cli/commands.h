#pragma once
// Subcommands of the `kvault` command-line tool. Each returns the process exit code:
// 0 success, 2 bad usage or bad input (one line on stderr), 1 an internal or I/O failure.

#include <string>
#include <vector>

#include "kvault/common/cli_args.h"
#include "kvault/common/status.h"

namespace kvault::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// Exit code for a failed status: bad usage or input (InvalidArgument; NotFound, such as a missing
// input file; Corruption, OutOfRange, Unsupported) is 2; I/O, resource and internal failures 1.
int ExitCodeFor(const Status& status);
// A failure to write an output file as the I/O failure it is (exit code 1), also when the file
// system reports NotFound (a missing directory), which for an input would be bad input.
Status OutputError(const Status& status);

// kvault codec roundtrip --codec SPEC ... IN OUT
int CodecRoundtrip(const std::vector<std::string>& args);
// kvault codec inspect [--no-verify] FILE
int CodecInspect(const std::vector<std::string>& args);
// kvault status --server HOST:PORT [--tenant T --token-file F] [--timeout-ms N]
int ServerStatus(const std::vector<std::string>& args);
// kvault stats --server HOST:PORT [--json] [...]
int ServerStats(const std::vector<std::string>& args);

}  // namespace kvault::cli
