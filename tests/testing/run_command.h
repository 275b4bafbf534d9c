// Runs a shell command and collects what it prints, for tests that use an
// outside program as a witness (kubectl reading what leasehold wrote).
#ifndef LEASEHOLD_TESTS_TESTING_RUN_COMMAND_H_
#define LEASEHOLD_TESTS_TESTING_RUN_COMMAND_H_

#include <string>

namespace leasehold::testing {

// Runs `command` with /bin/sh and returns its standard output. `*exit_code`
// is the exit status, or -1 when the command could not be started or did not
// exit normally.
std::string RunCommand(const std::string& command, int* exit_code);

}  // namespace leasehold::testing

#endif  // LEASEHOLD_TESTS_TESTING_RUN_COMMAND_H_
