#include "leasehold/status.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace leasehold {
namespace {

using ::testing::HasSubstr;

TEST(StatusTest, DefaultStatusIsOkWithAnEmptyMessage) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kOk);
  EXPECT_EQ(s.message(), "");
  EXPECT_EQ(s, Status::Ok());
}

TEST(StatusTest, EveryShorthandCarriesItsCodeAndMessage) {
  const std::vector<std::pair<Status, StatusCode>> cases = {
      {CancelledError("m"), StatusCode::kCancelled},
      {InvalidArgumentError("m"), StatusCode::kInvalidArgument},
      {DeadlineExceededError("m"), StatusCode::kDeadlineExceeded},
      {NotFoundError("m"), StatusCode::kNotFound},
      {PermissionDeniedError("m"), StatusCode::kPermissionDenied},
      {ResourceExhaustedError("m"), StatusCode::kResourceExhausted},
      {FailedPreconditionError("m"), StatusCode::kFailedPrecondition},
      {AbortedError("m"), StatusCode::kAborted},
      {UnimplementedError("m"), StatusCode::kUnimplemented},
      {InternalError("m"), StatusCode::kInternal},
      {UnavailableError("m"), StatusCode::kUnavailable},
      {DataLossError("m"), StatusCode::kDataLoss},
      {UnauthenticatedError("m"), StatusCode::kUnauthenticated},
  };
  for (const auto& [status, code] : cases) {
    EXPECT_FALSE(status.ok()) << StatusCodeName(code);
    EXPECT_EQ(status.code(), code) << StatusCodeName(code);
    EXPECT_EQ(status.message(), "m") << StatusCodeName(code);
  }
}

TEST(StatusTest, EveryCodeHasItsCanonicalName) {
  EXPECT_EQ(StatusCodeName(StatusCode::kOk), "OK");
  EXPECT_EQ(StatusCodeName(StatusCode::kCancelled), "CANCELLED");
  EXPECT_EQ(StatusCodeName(StatusCode::kInvalidArgument), "INVALID_ARGUMENT");
  EXPECT_EQ(StatusCodeName(StatusCode::kDeadlineExceeded), "DEADLINE_EXCEEDED");
  EXPECT_EQ(StatusCodeName(StatusCode::kNotFound), "NOT_FOUND");
  EXPECT_EQ(StatusCodeName(StatusCode::kPermissionDenied), "PERMISSION_DENIED");
  EXPECT_EQ(StatusCodeName(StatusCode::kResourceExhausted), "RESOURCE_EXHAUSTED");
  EXPECT_EQ(StatusCodeName(StatusCode::kFailedPrecondition), "FAILED_PRECONDITION");
  EXPECT_EQ(StatusCodeName(StatusCode::kAborted), "ABORTED");
  EXPECT_EQ(StatusCodeName(StatusCode::kUnimplemented), "UNIMPLEMENTED");
  EXPECT_EQ(StatusCodeName(StatusCode::kInternal), "INTERNAL");
  EXPECT_EQ(StatusCodeName(StatusCode::kUnavailable), "UNAVAILABLE");
  EXPECT_EQ(StatusCodeName(StatusCode::kDataLoss), "DATA_LOSS");
  EXPECT_EQ(StatusCodeName(StatusCode::kUnauthenticated), "UNAUTHENTICATED");
}

TEST(StatusTest, AnOutOfRangeCodeIsNamedUnknownRatherThanCrashing) {
  EXPECT_EQ(StatusCodeName(static_cast<StatusCode>(999)), "UNKNOWN");
}

TEST(StatusTest, ToStringIsCodeNameColonMessage) {
  EXPECT_EQ(UnavailableError("memory store: injected fault").ToString(),
            "UNAVAILABLE: memory store: injected fault");
  EXPECT_EQ(DeadlineExceededError("t").ToString(), "DEADLINE_EXCEEDED: t");
}

TEST(StatusTest, ToStringOfOkIsJustOk) { EXPECT_EQ(Status::Ok().ToString(), "OK"); }

TEST(StatusTest, WithContextPrefixesTheMessageAndKeepsTheCode) {
  Status s = NotFoundError("no record").WithContext("lease \"db\"");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "lease \"db\": no record");
  EXPECT_EQ(s.WithContext("etcd").message(), "etcd: lease \"db\": no record");
}

TEST(StatusTest, WithContextLeavesTheOriginalUntouched) {
  const Status original = AbortedError("lost cas");
  Status copy = original.WithContext("ctx");
  EXPECT_EQ(original.message(), "lost cas");
  EXPECT_NE(copy, original);
}

TEST(StatusTest, WithContextOnOkStaysOkWithNoMessage) {
  Status s = Status::Ok().WithContext("lease \"db\"");
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.message(), "");
  EXPECT_EQ(s.ToString(), "OK");
}

TEST(StatusTest, StatusesAreEqualOnlyWhenCodeAndMessageBothMatch) {
  EXPECT_EQ(UnavailableError("a"), UnavailableError("a"));
  EXPECT_NE(UnavailableError("a"), UnavailableError("b"));
  EXPECT_NE(UnavailableError("a"), AbortedError("a"));
  EXPECT_NE(UnavailableError(""), Status::Ok());
}

TEST(StatusTest, OnlyUnavailableDeadlineExceededResourceExhaustedAndAbortedAreTransient) {
  EXPECT_TRUE(IsTransient(StatusCode::kUnavailable));
  EXPECT_TRUE(IsTransient(StatusCode::kDeadlineExceeded));
  EXPECT_TRUE(IsTransient(StatusCode::kResourceExhausted));
  EXPECT_TRUE(IsTransient(StatusCode::kAborted));

  EXPECT_FALSE(IsTransient(StatusCode::kOk));
  EXPECT_FALSE(IsTransient(StatusCode::kCancelled));
  EXPECT_FALSE(IsTransient(StatusCode::kInvalidArgument));
  EXPECT_FALSE(IsTransient(StatusCode::kNotFound));
  EXPECT_FALSE(IsTransient(StatusCode::kPermissionDenied));
  EXPECT_FALSE(IsTransient(StatusCode::kFailedPrecondition));
  EXPECT_FALSE(IsTransient(StatusCode::kUnimplemented));
  EXPECT_FALSE(IsTransient(StatusCode::kInternal));
  EXPECT_FALSE(IsTransient(StatusCode::kDataLoss));
  EXPECT_FALSE(IsTransient(StatusCode::kUnauthenticated));
}

TEST(ResultTest, AResultBuiltFromAValueIsOkAndGivesTheValueBack) {
  Result<int> r = 42;
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.status().ok());
  EXPECT_EQ(r.value(), 42);
  EXPECT_EQ(*r, 42);
}

TEST(ResultTest, TheValueCanBeModifiedThroughTheResult) {
  Result<std::string> r = std::string("abc");
  r.value() += "d";
  *r += "e";
  r->push_back('f');
  EXPECT_EQ(*r, "abcdef");
  EXPECT_EQ(r->size(), 6u);
}

TEST(ResultTest, ConstAccessorsReadTheValue) {
  const Result<std::string> r = std::string("abc");
  EXPECT_EQ(r.value(), "abc");
  EXPECT_EQ(*r, "abc");
  EXPECT_EQ(r->size(), 3u);
}

TEST(ResultTest, TheValueCanBeMovedOutOfAnRvalueResult) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(7);
  std::unique_ptr<int> p = std::move(r).value();
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 7);
}

TEST(ResultTest, AResultBuiltFromAnErrorIsNotOkAndKeepsTheStatus) {
  Result<int> r = UnavailableError("store down");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status(), UnavailableError("store down"));
}

TEST(ResultTest, AccessingTheValueOfAnErrorResultThrowsBadResultAccess) {
  Result<int> r = UnavailableError("store down");
  EXPECT_THROW((void)r.value(), BadResultAccess);
  EXPECT_THROW((void)*r, BadResultAccess);
  const Result<int>& cr = r;
  EXPECT_THROW((void)cr.value(), BadResultAccess);
  EXPECT_THROW((void)*cr, BadResultAccess);
  EXPECT_THROW((void)std::move(r).value(), BadResultAccess);

  Result<std::string> s = AbortedError("x");
  EXPECT_THROW((void)s->size(), BadResultAccess);
}

TEST(ResultTest, BadResultAccessIsALogicErrorThatNamesTheStatus) {
  Result<int> r = UnavailableError("store down");
  try {
    (void)r.value();
    FAIL() << "value() of an error Result did not throw";
  } catch (const std::logic_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("UNAVAILABLE: store down"));
  }
}

TEST(ResultTest, AResultBuiltFromAnOkStatusBecomesInternal) {
  Result<int> r = Status::Ok();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
  EXPECT_FALSE(r.status().message().empty());
  EXPECT_THROW((void)r.value(), BadResultAccess);
}

}  // namespace
}  // namespace leasehold
