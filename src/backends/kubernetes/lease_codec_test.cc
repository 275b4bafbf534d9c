#include "lease_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <limits>
#include <string>

namespace leasehold::kubernetes::detail {
namespace {

using ::testing::HasSubstr;

TEST(KubernetesCodecTest, MicroTimesRoundTripWithSixDigitsInUtc) {
  const auto t = ParseMicroTime("2026-11-26T08:53:07.417335Z");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(FormatMicroTime(*t), "2026-11-26T08:53:07.417335Z");
  EXPECT_EQ(FormatMicroTime(*ParseMicroTime("2026-11-26T09:53:07.4+01:00")),
            "2026-11-26T08:53:07.400000Z");
  EXPECT_EQ(FormatMicroTime(*ParseMicroTime("1970-01-01T00:00:00Z")),
            "1970-01-01T00:00:00.000000Z");
}

TEST(KubernetesCodecTest, GarbageTimesAreRejected) {
  for (const char* bad : {"", "yesterday", "2026-13-01T00:00:00Z", "2026-11-26T08:53:07",
                          "2026-11-26T08:53:07.Z", "2026-11-26 08:53:07Z", "2026-11-26T08:53:07Zx",
                          // Outside what a nanosecond WallTime holds (found by the fuzzer).
                          "1013-11-26T08:53:07.417335Z", "9999-12-31T23:59:59Z"}) {
    EXPECT_FALSE(ParseMicroTime(bad).has_value()) << bad;
  }
}

TEST(KubernetesCodecTest, ALeaseIsDecodedAndUnknownFieldsAreKept) {
  auto lease = DecodeLease(R"({"kind":"Lease","apiVersion":"coordination.k8s.io/v1",
    "metadata":{"name":"x","uid":"u1","resourceVersion":"7","labels":{"a":"b"},
                "annotations":{"leasehold.io/incarnation":"inc"}},
    "spec":{"holderIdentity":"h","leaseDurationSeconds":15,"leaseTransitions":3,
            "renewTime":"2026-11-26T08:53:07.417335Z","strategy":"Future"}})");
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  EXPECT_EQ(lease->name, "x");
  EXPECT_EQ(lease->uid, "u1");
  EXPECT_EQ(lease->resource_version, "7");
  EXPECT_EQ(lease->holder, "h");
  EXPECT_EQ(lease->duration_seconds, 15);
  EXPECT_EQ(lease->transitions, 3);
  EXPECT_EQ(lease->incarnation, "inc");
  EXPECT_TRUE(lease->renew_time.has_value());
  EXPECT_FALSE(lease->acquire_time.has_value());
  EXPECT_EQ(lease->object["spec"]["strategy"], "Future");
  EXPECT_EQ(lease->object["metadata"]["labels"]["a"], "b");
}

TEST(KubernetesCodecTest, HostileFieldsDecodeAsAbsent) {
  auto lease = DecodeLease(R"({"metadata":{"name":"x","uid":"u","resourceVersion":"1"},
    "spec":{"holderIdentity":42,"leaseDurationSeconds":"15","leaseTransitions":1.5,
            "renewTime":"garbage","acquireTime":7}})");
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  EXPECT_EQ(lease->holder, "");
  EXPECT_FALSE(lease->duration_seconds.has_value());
  EXPECT_FALSE(lease->transitions.has_value());
  EXPECT_FALSE(lease->renew_time.has_value());
  EXPECT_FALSE(lease->acquire_time.has_value());
}

TEST(KubernetesCodecTest, HugeUnsignedNumbersSaturateInsteadOfWrappingNegative) {
  auto lease = DecodeLease(R"({"metadata":{"name":"x","uid":"u","resourceVersion":"1"},
    "spec":{"holderIdentity":"h","leaseDurationSeconds":18446744073709551615,
            "leaseTransitions":18446744073709551615}})");
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  EXPECT_EQ(lease->transitions, std::numeric_limits<int64_t>::max());
  EXPECT_EQ(lease->duration_seconds, std::numeric_limits<int64_t>::max());
}

TEST(KubernetesCodecTest, RepliesNestedDeeperThanALeaseCanBeAreRefused) {
  // Copying or dumping such a value would recurse once per level.
  const std::string deep = R"({"metadata":{"name":"x","uid":"u","resourceVersion":"1"},"x":)" +
                           std::string(100000, '[') + std::string(100000, ']') + "}";
  auto lease = DecodeLease(deep);
  ASSERT_FALSE(lease.ok());
  EXPECT_EQ(lease.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(lease.status().message(), HasSubstr("deeper than 64"));
  EXPECT_FALSE(ParseWatchLine(R"({"type":"MODIFIED","object":)" + std::string(1000, '[') +
                              std::string(1000, ']') + "}")
                   .ok());
  // Brackets inside strings do not count.
  auto fine = DecodeLease(R"({"metadata":{"name":"x","uid":"u","resourceVersion":"1",
    "annotations":{"a":")" +
                          std::string(1000, '[') + R"("}}})");
  EXPECT_TRUE(fine.ok()) << fine.status().ToString();
}

TEST(KubernetesCodecTest, MalformedRepliesAreDataLossNamingWhatIsWrong) {
  EXPECT_THAT(DecodeLease("{").status().message(), HasSubstr("not JSON"));
  EXPECT_THAT(DecodeLease("[]").status().message(), HasSubstr("not a JSON object"));
  EXPECT_THAT(DecodeLease(R"({"kind":"Pod","metadata":{}})").status().message(), HasSubstr("Pod"));
  EXPECT_THAT(DecodeLease(R"({"metadata":{"name":"x","uid":"u"}})").status().message(),
              HasSubstr("resourceVersion"));
  EXPECT_EQ(DecodeLease("{").status().code(), StatusCode::kDataLoss);
}

TEST(KubernetesCodecTest, StatusObjectsGiveReasonMessageAndCauses) {
  auto st = DecodeStatus(R"({"kind":"Status","reason":"Invalid","message":"bad",
    "details":{"causes":[{"field":"spec.leaseDurationSeconds","message":"must be > 0"}]}})");
  EXPECT_EQ(st.reason, "Invalid");
  EXPECT_EQ(st.message, "bad");
  EXPECT_EQ(st.causes, "spec.leaseDurationSeconds: must be > 0");
  EXPECT_EQ(DecodeStatus("not json").reason, "");
}

TEST(KubernetesCodecTest, WatchLinesAreParsed) {
  auto ev = ParseWatchLine(R"({"type":"MODIFIED","object":{"metadata":{"resourceVersion":"9"}}})");
  ASSERT_TRUE(ev.ok());
  EXPECT_EQ(ev->type, "MODIFIED");
  EXPECT_EQ(ev->resource_version, "9");
  auto gone = ParseWatchLine(R"({"type":"ERROR","object":{"kind":"Status","code":410}})");
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(gone->error_code, 410);
  EXPECT_FALSE(ParseWatchLine("garbage").ok());
  EXPECT_FALSE(ParseWatchLine(R"({"object":{}})").ok());
}

TEST(KubernetesCodecTest, NamesMustBeDnsSubdomains) {
  EXPECT_TRUE(IsDnsSubdomain("a"));
  EXPECT_TRUE(IsDnsSubdomain("my-lease.example-1"));
  EXPECT_TRUE(IsDnsSubdomain(std::string(253, 'a')));
  for (const std::string& bad : {std::string(), std::string(254, 'a'), std::string("A"),
                                 std::string("-a"), std::string("a-"), std::string("a..b"),
                                 std::string("a_b"), std::string("a/b"), std::string(".a")}) {
    EXPECT_FALSE(IsDnsSubdomain(bad)) << bad;
  }
}

}  // namespace
}  // namespace leasehold::kubernetes::detail
