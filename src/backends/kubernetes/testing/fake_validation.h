// Decoding and validation of request bodies in the fake Kubernetes API server:
// a Lease as the API server's JSON decoder reads it (400 BadRequest for what
// does not decode, unknown fields dropped with a warning) and validates it
// (422 Invalid with causes), and DeleteOptions.
//
// Thread-safety: stateless functions, safe from any thread.
#ifndef LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_VALIDATION_H_
#define LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_VALIDATION_H_

#include <optional>
#include <string>
#include <vector>

#include "fake_api_server.h"
#include "fake_common.h"

namespace leasehold::kubernetes::testing::detail {

// What became of a create or update body.
struct Admission {
  int code = 0;  // 0: admitted; else the error's HTTP status
  json status;   // the error's Status object
  json object;   // when admitted: the decoded object, null fields removed,
                 // times normalised to UTC, metadata.name set on update
  // Unknown fields dropped, as `Warning: 299` header values; set whenever the
  // body decoded, even if it was then refused.
  std::vector<std::string> warnings;
};

// Decodes and validates `body` for a create (verb kCreate) or an update
// (kUpdate) of the lease `name` (empty for a create) in `ns`.
Admission Admit(const std::string& body, Verb verb, const std::string& ns, const std::string& name);

// Decodes a DELETE body (empty: no options) into `options`. Returns the 400
// message when it does not decode.
std::optional<std::string> DecodeDeleteOptions(const std::string& body, json& options);

}  // namespace leasehold::kubernetes::testing::detail

#endif  // LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_VALIDATION_H_
