#include "leasehold/detail/io.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "testing/temp_dir.h"

namespace leasehold::detail {
namespace {

using ::testing::HasSubstr;

TEST(RandomHexIdTest, IsSixteenHexDigitsAndDiffersEveryTime) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const std::string id = RandomHexId();
    ASSERT_EQ(id.size(), 16u) << id;
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 100u);
}

class ReadSmallFileTest : public ::testing::Test {
 protected:
  leasehold::testing::TempDir dir_;
};

TEST_F(ReadSmallFileTest, ReadsTheWholeFileBytesAsTheyAre) {
  std::string content = "line one\nline two\r\n";
  content.push_back('\0');
  content += "after a NUL";
  ASSERT_TRUE(leasehold::testing::WriteFile(dir_.File("f"), content));
  auto read = ReadSmallFile(dir_.File("f"), "the test file");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(*read, content);
}

TEST_F(ReadSmallFileTest, AMissingFileIsNotFoundAndTheErrorNamesWhatAndWhere) {
  auto read = ReadSmallFile(dir_.File("absent"), "the CA file");
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(read.status().message(), HasSubstr("the CA file"));
  EXPECT_THAT(read.status().message(), HasSubstr(dir_.File("absent")));
}

TEST_F(ReadSmallFileTest, ADirectoryIsRefused) {
  auto read = ReadSmallFile(dir_.path(), "the key file");
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(read.status().message(), HasSubstr("not a regular file"));
}

TEST_F(ReadSmallFileTest, AFifoIsRefusedWithoutWaitingForAWriter) {
  ASSERT_EQ(::mkfifo(dir_.File("fifo").c_str(), 0600), 0);
  auto read = ReadSmallFile(dir_.File("fifo"), "the token file");
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(read.status().message(), HasSubstr("not a regular file"));
}

TEST_F(ReadSmallFileTest, AFileOverTheLimitIsRefusedAndOneAtTheLimitIsRead) {
  ASSERT_TRUE(leasehold::testing::WriteFile(dir_.File("at"), std::string(64, 'x')));
  ASSERT_TRUE(leasehold::testing::WriteFile(dir_.File("over"), std::string(65, 'x')));
  EXPECT_TRUE(ReadSmallFile(dir_.File("at"), "the file", 64).ok());
  auto over = ReadSmallFile(dir_.File("over"), "the file", 64);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(over.status().message(), HasSubstr("larger than 64 bytes"));
}

// The backends and the CLI check endpoints and names with these, so a value
// the CLI accepts is one the backend accepts, with the same words.
TEST(CheckEndpointTest, AcceptsHostPortAndBracketedIpv6) {
  for (const char* good : {"127.0.0.1:2379", "etcd-0.etcd.svc:2379", "my_host:1", "[::1]:65535"}) {
    EXPECT_TRUE(CheckEndpoint(good).ok()) << good;
  }
}

TEST(CheckEndpointTest, SaysWhatIsWrong) {
  const std::pair<const char*, const char*> cases[] = {
      {"localhost", "needs a port"},
      {":2379", "is not a host name"},
      {"host:", "is not a number"},
      {"host:0", "out of range"},
      {"host:99999", "out of range"},
      {"host:12a", "is not a number"},
      {"a b:1", "is not a host name"},
      {"h/x:1", "is not a host name"},
      {"[::1", "unclosed"},
      {"[::1]", "needs a port"},
      {"[zz]:1", "IPv6"},
  };
  for (const auto& [bad, why] : cases) {
    const Status s = CheckEndpoint(bad);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr(why)) << bad;
  }
}

TEST(DnsNamesTest, LabelsAndSubdomainsFollowDns1123) {
  EXPECT_TRUE(IsDnsLabel("default"));
  EXPECT_TRUE(IsDnsLabel(std::string(63, 'a')));
  for (const std::string& bad :
       std::vector<std::string>{"", "a.b", "-a", "a-", "A", std::string(64, 'a'), "a_b"}) {
    EXPECT_FALSE(IsDnsLabel(bad)) << bad;
  }
  EXPECT_TRUE(IsDnsSubdomain("my-lease.example-1"));
  EXPECT_TRUE(IsDnsSubdomain(std::string(253, 'a')));
  for (const std::string& bad :
       std::vector<std::string>{"", "a..b", ".a", "a.", "a.-b", std::string(254, 'a'), "a/b"}) {
    EXPECT_FALSE(IsDnsSubdomain(bad)) << bad;
  }
}

}  // namespace
}  // namespace leasehold::detail
