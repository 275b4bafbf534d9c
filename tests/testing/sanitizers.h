// leasehold tests: whether this build runs under a sanitizer.
//
// ASan and TSan builds run several times slower, and a fresh TLS handshake or
// an etcd round trip can then outlast a short TTL's request timeout: real-time
// tests scale their TTLs and slack by this, rather than being left out of the
// sanitized runs.
#ifndef LEASEHOLD_TESTS_TESTING_SANITIZERS_H_
#define LEASEHOLD_TESTS_TESTING_SANITIZERS_H_

namespace leasehold::testing {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

}  // namespace leasehold::testing

#endif  // LEASEHOLD_TESTS_TESTING_SANITIZERS_H_
