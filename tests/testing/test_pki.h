// A throwaway public-key infrastructure for tests that speak TLS: a CA, a
// server certificate it signed for the loopback addresses, a client
// certificate it signed, and an unrelated CA (for "wrong CA" tests) with a
// client certificate of its own. Keys are EC P-256 (fast to generate);
// certificates are valid from an hour ago for a day.
//
// Generated in-process with OpenSSL, so tests need no `openssl` binary and
// every test run gets fresh keys.
#ifndef LEASEHOLD_TESTS_TESTING_TEST_PKI_H_
#define LEASEHOLD_TESTS_TESTING_TEST_PKI_H_

#include <string>

#include "leasehold/status.h"

namespace leasehold::testing {

struct TestPki {
  // The trusted CA (PEM file and text).
  std::string ca_file;
  std::string ca_pem;
  // Server certificate (SAN: IP 127.0.0.1, IP ::1, DNS localhost) and key.
  std::string server_cert_file;
  std::string server_key_file;
  // Client certificate (CN = client_name, O = client_group; extended key
  // usage clientAuth) and key, signed by the trusted CA.
  std::string client_name;
  std::string client_group;
  std::string client_cert_file;
  std::string client_key_file;
  std::string client_cert_pem;
  std::string client_key_pem;
  // A CA that signed nothing above, and a client certificate it signed (a
  // server trusting only ca_file must refuse it).
  std::string other_ca_file;
  std::string other_ca_pem;
  std::string foreign_client_cert_file;
  std::string foreign_client_key_file;

  // Generates everything into the existing directory `dir` (files ca.crt,
  // server.crt, server.key, client.crt, client.key, other-ca.crt,
  // foreign-client.crt, foreign-client.key; keys mode 0600). kInternal with
  // OpenSSL's reason on failure.
  static Result<TestPki> Create(const std::string& dir,
                                const std::string& client_name = "leasehold-client",
                                const std::string& client_group = "leasehold-testers");
};

}  // namespace leasehold::testing

#endif  // LEASEHOLD_TESTS_TESTING_TEST_PKI_H_
