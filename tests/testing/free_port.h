// A free TCP port on 127.0.0.1 for a server a test starts. The port is free
// when this returns; a server that then loses the race for it should be
// started again on another (the fixtures retry).
#ifndef LEASEHOLD_TESTS_TESTING_FREE_PORT_H_
#define LEASEHOLD_TESTS_TESTING_FREE_PORT_H_

namespace leasehold::testing {

// 0 when no port could be had.
int FreePort();

}  // namespace leasehold::testing

#endif  // LEASEHOLD_TESTS_TESTING_FREE_PORT_H_
