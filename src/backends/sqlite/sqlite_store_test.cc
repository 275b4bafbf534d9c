// SQLite-specific behaviour: durable sequences, hostile records, Break, bad
// files, and two store objects (two "processes") on one file.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "leasehold/backends/sqlite.h"
#include "leasehold/lease.h"
#include "sqlite_test_util.h"
#include "testing/store_calls.h"

namespace leasehold {
namespace {

using namespace std::chrono_literals;
using sqlite_test::Raw;
using sqlite_test::TempDir;
using ::testing::HasSubstr;

class SqliteStoreTest : public ::testing::Test {
 protected:
  std::shared_ptr<SqliteStore> Open() {
    auto store = SqliteStore::Open({.path = dir_.db()}, rt_);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? *store : nullptr;
  }
  std::unique_ptr<Lease> Make(const std::shared_ptr<Store>& store, const std::string& owner,
                              const std::string& name = "job") {
    auto lease = Lease::Create(store, {.name = name, .owner = owner, .ttl = 3s});
    EXPECT_TRUE(lease.ok()) << lease.status().ToString();
    return std::move(*lease);
  }
  uint64_t AcquireSequence(Lease& lease) {
    auto token = lease.AcquireWithToken();
    EXPECT_TRUE(token.ok() && token->has_value()) << token.status().ToString();
    return token.ok() && token->has_value() ? (*token)->sequence : 0;
  }
  void TearDown() override { rt_->RunFor(1min); }

  TempDir dir_;
  std::shared_ptr<SimulatedRuntime> rt_ = SimulatedRuntime::Create();
};

TEST_F(SqliteStoreTest, SequencesSurviveReopeningTheDatabase) {
  uint64_t first;
  {
    auto store = Open();
    auto a = Make(store, "a");
    first = AcquireSequence(*a);
    ASSERT_TRUE(a->Release().ok());
  }
  auto store = Open();  // as after a restart of every process
  auto b = Make(store, "b");
  EXPECT_GT(AcquireSequence(*b), first);
}

TEST_F(SqliteStoreTest, SequencesSurviveTheLeaseRowBeingDeletedByHand) {
  auto store = Open();
  auto a = Make(store, "a");
  const uint64_t first = AcquireSequence(*a);
  Raw(dir_.db()).Exec("DELETE FROM leasehold_leases");
  rt_->RunFor(5s);
  auto b = Make(store, "b");
  EXPECT_GT(AcquireSequence(*b), first);
}

TEST_F(SqliteStoreTest, TwoStoreObjectsOnOneFileNeverBothHold) {
  auto s1 = Open();
  auto s2 = Open();
  auto a = Make(s1, "a");
  auto b = Make(s2, "b");
  auto fa = a->StartAcquire();
  auto fb = b->StartAcquire();
  const auto& ra = fa.Wait();
  const auto& rb = fb.Wait();
  ASSERT_TRUE(ra.ok() && rb.ok());
  EXPECT_NE(ra->has_value(), rb->has_value());
}

TEST_F(SqliteStoreTest, BreakFreesTheLeaseAndTheNextHolderGetsAHigherSequence) {
  auto store = Open();
  auto a = Make(store, "a");
  const uint64_t first = AcquireSequence(*a);
  Promise<Status> broke(rt_);
  store->Break("job", rt_->clock().Now() + 1s,
               [broke](Status s) mutable { broke.Set(std::move(s)); });
  auto broken = broke.future();
  ASSERT_TRUE(broken.Wait().ok()) << broken.Wait().ToString();
  auto b = Make(store, "b");
  const uint64_t second = AcquireSequence(*b);
  EXPECT_GT(second, first);
  Fence fence;
  ASSERT_TRUE(fence.Admit(second).ok());
  EXPECT_FALSE(fence.Admit(first).ok());  // the broken holder is fenced out
}

// CONFORMANCE item 31: broken or hostile records never wedge a lease forever.
TEST_F(SqliteStoreTest, HostileRecordsDoNotWedgeTheLease) {
  auto store = Open();
  auto a = Make(store, "a");
  ASSERT_GT(AcquireSequence(*a), 0u);
  ASSERT_TRUE(a->Release().ok());
  const std::string boot = sqlite_test::BootId();
  const std::string bad[] = {
      "holder = 'x', ttl_ns = 9223372036854775807",      // huge TTL
      "holder = 'x', ttl_ns = -5",                       // negative TTL
      "holder = 'x', renewed_ns = 9223372036854775000",  // renewed in the future
      "holder = 'x', renewed_ns = 'yesterday'",          // not a number
      "holder = 'x', renewed_ns = NULL",                 // missing time
      "holder = 'x', boot_id = 'another-boot'",          // written before a reboot
      "holder = 42",                                     // holder of the wrong type
  };
  for (const std::string& set : bad) {
    Raw(dir_.db()).Exec("UPDATE leasehold_leases SET boot_id = '" + boot +
                        "', renewed_ns = 0, ttl_ns = 1000000000, version = version + 1; "
                        "UPDATE leasehold_leases SET " +
                        set);
    auto b = Make(store, "b");
    auto r = b->Acquire();
    ASSERT_TRUE(r.ok()) << set << ": " << r.status().ToString();
    EXPECT_TRUE(*r) << "wedged by: " << set;
    ASSERT_TRUE(b->Release().ok());
  }
}

// A row whose name is a blob (hand-written) fails a listing that reaches it,
// rather than being skipped; one that stops before it does not.
TEST_F(SqliteStoreTest, ARowWhoseNameIsNotTextFailsTheListing) {
  auto store = Open();
  auto a = Make(store, "a");
  ASSERT_GT(AcquireSequence(*a), 0u);
  {
    Raw(dir_.db()).Exec("INSERT INTO leasehold_leases(name, sequence) VALUES(x'00ff', 1)");
    auto listed = testing::ListRecords(*store, "", 5s);
    ASSERT_FALSE(listed.ok());
    EXPECT_EQ(listed.status().code(), StatusCode::kDataLoss) << listed.status().ToString();
    EXPECT_THAT(listed.status().message(), HasSubstr("not text"));
    auto jobs = testing::ListRecords(*store, "jo", 5s);
    ASSERT_TRUE(jobs.ok()) << jobs.status().ToString();
    EXPECT_EQ(testing::Names(*jobs), std::vector<std::string>{"job"});
  }
}

TEST_F(SqliteStoreTest, AFileThatIsNotADatabaseIsReportedAsDataLoss) {
  {
    std::ofstream out(dir_.db());
    out << "this is not an SQLite database, just text that is long enough to be read";
  }
  auto store = SqliteStore::Open({.path = dir_.db()}, rt_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kDataLoss) << store.status().ToString();
  EXPECT_THAT(store.status().message(), HasSubstr(dir_.db()));
}

TEST_F(SqliteStoreTest, ARelativePathIsRejectedBeforeAnyIo) {
  auto store = SqliteStore::Open({.path = "leases.db"}, rt_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(store.status().message(), HasSubstr("absolute"));
}

TEST_F(SqliteStoreTest, ATtlAboveTheStoresMaximumIsRejected) {
  auto store = Open();
  auto lease = Lease::Create(store, {.name = "job", .owner = "a", .ttl = 2h});
  ASSERT_TRUE(lease.ok());
  auto r = (*lease)->Acquire();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("maximum"));
}

TEST_F(SqliteStoreTest, InspectShowsHolderSequenceAndTimeLeft) {
  auto store = Open();
  auto a = Make(store, "a");
  const uint64_t seq = AcquireSequence(*a);
  Promise<Result<LeaseRecord>> out(rt_);
  store->Inspect("job", rt_->clock().Now() + 1s,
                 [out](Result<LeaseRecord> r) mutable { out.Set(std::move(r)); });
  auto future = out.future();
  const auto& record = future.Wait();
  ASSERT_TRUE(record.ok()) << record.status().ToString();
  EXPECT_EQ(record->holder, a->identity());
  EXPECT_EQ(record->token.sequence, seq);
  ASSERT_TRUE(record->remaining.has_value());
  EXPECT_GT(*record->remaining, 2s);
}

}  // namespace
}  // namespace leasehold
