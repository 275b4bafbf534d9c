// A temporary directory for tests, removed with everything in it.
#ifndef LEASEHOLD_TESTS_TESTING_TEMP_DIR_H_
#define LEASEHOLD_TESTS_TESTING_TEMP_DIR_H_

#include <string>

namespace leasehold::testing {

// Creates $TMPDIR/leasehold-<tag>-XXXXXX (or under /tmp) on construction and
// removes it recursively on destruction. path() is empty if it could not be
// created; ok() says so.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Replaces `path` atomically with `contents` (mode 0600): a concurrent reader
// sees the old file or the new one, never a partial write. False on failure.
bool WriteFile(const std::string& path, const std::string& contents);

}  // namespace leasehold::testing

#endif  // LEASEHOLD_TESTS_TESTING_TEMP_DIR_H_
