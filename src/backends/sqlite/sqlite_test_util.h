// Test helpers for the SQLite store: a temporary database directory and a raw
// connection for writing records the way another (possibly broken) program
// would.
#ifndef LEASEHOLD_SRC_BACKENDS_SQLITE_SQLITE_TEST_UTIL_H_
#define LEASEHOLD_SRC_BACKENDS_SQLITE_SQLITE_TEST_UTIL_H_

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

namespace leasehold::sqlite_test {

// A directory under $TMPDIR (or /tmp), removed with its files.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/leasehold-sqlite-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = pattern;
  }
  ~TempDir() {
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      std::remove((db() + suffix).c_str());
    }
    rmdir(path_.c_str());
  }
  const std::string& path() const { return path_; }
  std::string db() const { return path_ + "/leases.db"; }

 private:
  std::string path_;
};

inline std::string BootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

// A raw connection to the database; Exec fails the test on error.
class Raw {
 public:
  explicit Raw(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) ADD_FAILURE() << "open " << path;
    sqlite3_busy_timeout(db_, 5000);
  }
  ~Raw() { sqlite3_close_v2(db_); }
  bool Exec(const std::string& sql) {
    char* err = nullptr;
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) ADD_FAILURE() << sql << ": " << (err ? err : "?");
    sqlite3_free(err);
    return rc == SQLITE_OK;
  }
  sqlite3* get() { return db_; }

 private:
  sqlite3* db_ = nullptr;
};

}  // namespace leasehold::sqlite_test

#endif  // LEASEHOLD_SRC_BACKENDS_SQLITE_SQLITE_TEST_UTIL_H_
