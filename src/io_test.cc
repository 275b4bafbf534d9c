#include "leasehold/detail/io.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <set>
#include <string>

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

}  // namespace
}  // namespace leasehold::detail
