// Every collective of the MPI communicator against a reference computed locally from the
// same deterministic per-rank data: all dtypes, in place and out of place, zero-length and
// very uneven buffers, non-blocking ops overlapped with computation, every group of a layout.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstring>
#include <numeric>

#include "comm/comm_logger.hpp"
#include "comm/mpi_communicator.hpp"
#include "comm/process_groups.hpp"
#include "base/dtype.hpp"

using namespace dmpi;
using namespace dmpi::comm;

namespace {

int world_size() {
  int s;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

MpiCommunicator& world() {
  static MpiCommunicator w(MPI_COMM_WORLD, "world", false);
  return w;
}

// Small integers (exact in every dtype, and their sums over <= 8 ranks too).
double value(int rank, size_t i) { return static_cast<double>(static_cast<int>((rank * 7 + i * 3) % 17) - 8); }

// Buffers of each dtype built from doubles, and read back as doubles.
std::vector<unsigned char> make(DType t, const std::vector<double>& v) {
  std::vector<unsigned char> b(v.size() * dtype_size(t));
  for (size_t i = 0; i < v.size(); ++i) {
    unsigned char* p = b.data() + i * dtype_size(t);
    switch (t) {
      case DType::F32: { float x = static_cast<float>(v[i]); std::memcpy(p, &x, 4); break; }
      case DType::F16: { uint16_t x = float_to_half(static_cast<float>(v[i])); std::memcpy(p, &x, 2); break; }
      case DType::BF16: { uint16_t x = to_bf16(static_cast<float>(v[i])).bits; std::memcpy(p, &x, 2); break; }
      case DType::I32: { int32_t x = static_cast<int32_t>(v[i]); std::memcpy(p, &x, 4); break; }
      case DType::I64: { int64_t x = static_cast<int64_t>(v[i]); std::memcpy(p, &x, 8); break; }
      case DType::F64: { std::memcpy(p, &v[i], 8); break; }
    }
  }
  return b;
}
double get(DType t, const std::vector<unsigned char>& b, size_t i) {
  const unsigned char* p = b.data() + i * dtype_size(t);
  switch (t) {
    case DType::F32: { float x; std::memcpy(&x, p, 4); return x; }
    case DType::F16: { uint16_t x; std::memcpy(&x, p, 2); return half_to_float(x); }
    case DType::BF16: { uint16_t x; std::memcpy(&x, p, 2); return to_float(bf16{x}); }
    case DType::I32: { int32_t x; std::memcpy(&x, p, 4); return x; }
    case DType::I64: { int64_t x; std::memcpy(&x, p, 8); return static_cast<double>(x); }
    case DType::F64: { double x; std::memcpy(&x, p, 8); return x; }
  }
  return 0;
}
// What the reduction should give, rounded to the dtype as the implementation must.
double expect_reduce(DType t, ReduceOp op, int n, size_t i) {
  double s = 0, m = -1e300;
  for (int r = 0; r < n; ++r) {
    s += value(r, i);
    m = std::max(m, value(r, i));
  }
  if (op == ReduceOp::Max) return m;
  if (op == ReduceOp::Sum) return s;
  if (t == DType::I32 || t == DType::I64) return static_cast<double>(static_cast<long long>(s) / n);
  float avg = static_cast<float>(s) / static_cast<float>(n);
  if (t == DType::F16) return half_to_float(float_to_half(avg));
  if (t == DType::BF16) return to_float(to_bf16(avg));
  if (t == DType::F64) return s / n;
  return avg;
}

const DType kTypes[] = {DType::F32, DType::F16, DType::BF16, DType::I32, DType::I64, DType::F64};
const size_t kCounts[] = {0, 1, 7, 1000, 100003};

}  // namespace

TEST(Collectives, AllReduceEveryTypeOpAndSize) {
  auto& c = world();
  const int n = c.size(), me = c.rank();
  for (DType t : kTypes)
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max})
      for (size_t count : kCounts)
        for (bool in_place : {false, true}) {
          SCOPED_TRACE(std::string(dtype_name(t)) + " " + op_name(op) + " count " + std::to_string(count) +
                       (in_place ? " in place" : ""));
          std::vector<double> v(count);
          for (size_t i = 0; i < count; ++i) v[i] = value(me, i);
          auto send = make(t, v);
          auto recv = in_place ? send : std::vector<unsigned char>(send.size(), 0xAB);
          c.all_reduce(in_place ? recv.data() : send.data(), recv.data(), count, t, op);
          size_t bad = 0;
          for (size_t i = 0; i < count; ++i)
            if (get(t, recv, i) != expect_reduce(t, op, n, i)) ++bad;
          EXPECT_EQ(bad, 0u);
        }
}

TEST(Collectives, Fp32SumOfNonIntegersAgainstDouble) {
  auto& c = world();
  const size_t count = 4096;
  std::vector<float> x(count), y(count);
  for (size_t i = 0; i < count; ++i) x[i] = std::sin(0.37 * i + c.rank()) * 1e3f;
  c.all_reduce(x.data(), y.data(), count, DType::F32, ReduceOp::Sum);
  for (size_t i = 0; i < count; ++i) {
    double s = 0;
    for (int r = 0; r < c.size(); ++r) s += static_cast<float>(std::sin(0.37 * i + r) * 1e3f);
    ASSERT_NEAR(y[i], s, 1e-3) << i;
  }
}

TEST(Collectives, ReduceScatter) {
  auto& c = world();
  const int n = c.size(), me = c.rank();
  for (DType t : kTypes)
    for (size_t block : {size_t{0}, size_t{1}, size_t{333}})
      for (bool in_place : {false, true}) {
        SCOPED_TRACE(std::string(dtype_name(t)) + " block " + std::to_string(block));
        std::vector<double> v(block * n);
        for (size_t i = 0; i < v.size(); ++i) v[i] = value(me, i);
        auto send = make(t, v);
        std::vector<unsigned char> recv = in_place ? send : std::vector<unsigned char>(block * dtype_size(t));
        c.reduce_scatter(in_place ? recv.data() : send.data(), recv.data(), block, t, ReduceOp::Sum);
        for (size_t i = 0; i < block; ++i) ASSERT_EQ(get(t, recv, i), expect_reduce(t, ReduceOp::Sum, n, me * block + i));
      }
}

TEST(Collectives, AllGatherEqualAndInPlace) {
  auto& c = world();
  const int n = c.size(), me = c.rank();
  for (size_t count : {size_t{0}, size_t{5}, size_t{10000}})
    for (bool in_place : {false, true}) {
      std::vector<int64_t> mine(count), all(count * n, -1);
      for (size_t i = 0; i < count; ++i) mine[i] = me * 1000003LL + static_cast<int64_t>(i);
      if (in_place) std::copy(mine.begin(), mine.end(), all.begin() + me * count);
      c.all_gather(in_place ? all.data() + me * count : mine.data(), count, all.data(), DType::I64);
      for (int r = 0; r < n; ++r)
        for (size_t i = 0; i < count; ++i) ASSERT_EQ(all[r * count + i], r * 1000003LL + static_cast<int64_t>(i));
    }
}

TEST(Collectives, AllGathervVeryUneven) {
  auto& c = world();
  const int n = c.size(), me = c.rank();
  std::vector<size_t> counts(n);
  for (int r = 0; r < n; ++r) counts[r] = r == n - 1 ? 100000 : (r * r * 37) % 11;  // zeros included
  size_t total = std::accumulate(counts.begin(), counts.end(), size_t{0});
  std::vector<float> mine(counts[me]), all(total, -1.f);
  for (size_t i = 0; i < mine.size(); ++i) mine[i] = static_cast<float>(me * 100000 + i);
  c.all_gatherv(mine.data(), all.data(), counts, DType::F32);
  size_t off = 0;
  for (int r = 0; r < n; ++r)
    for (size_t i = 0; i < counts[r]; ++i, ++off) ASSERT_EQ(all[off], static_cast<float>(r * 100000 + i));
}

TEST(Collectives, BroadcastFromEveryRoot) {
  auto& c = world();
  for (int root = 0; root < c.size(); ++root) {
    std::vector<int32_t> b(777, c.rank() == root ? root * 11 + 5 : -1);
    c.broadcast(b.data(), b.size(), DType::I32, root);
    for (auto x : b) ASSERT_EQ(x, root * 11 + 5);
  }
}

TEST(Collectives, AllToAllEqualAndInPlace) {
  auto& c = world();
  const int n = c.size(), me = c.rank();
  for (bool in_place : {false, true}) {
    const size_t k = 129;
    std::vector<int32_t> send(k * n), recv(k * n, -1);
    for (int d = 0; d < n; ++d)
      for (size_t i = 0; i < k; ++i) send[d * k + i] = me * 10000 + d * 1000 + static_cast<int>(i);
    if (in_place) recv = send;
    c.all_to_all(in_place ? recv.data() : send.data(), recv.data(), k, DType::I32);
    for (int s = 0; s < n; ++s)
      for (size_t i = 0; i < k; ++i) ASSERT_EQ(recv[s * k + i], s * 10000 + me * 1000 + static_cast<int>(i));
  }
}

TEST(Collectives, AllToAllvUneven) {
  auto& c = world();
  const int n = c.size(), me = c.rank();
  auto cnt = [](int src, int dst) { return static_cast<size_t>((src * 5 + dst * 3) % 7); };  // zeros included
  std::vector<size_t> sc(n), rc(n);
  for (int r = 0; r < n; ++r) sc[r] = cnt(me, r), rc[r] = cnt(r, me);
  std::vector<double> send, recv(std::accumulate(rc.begin(), rc.end(), size_t{0}), -1);
  for (int d = 0; d < n; ++d)
    for (size_t i = 0; i < sc[d]; ++i) send.push_back(me * 100 + d + 0.5 * i);
  std::vector<float> sendf(send.begin(), send.end()), recvf(recv.size());
  c.all_to_allv(sendf.data(), sc, recvf.data(), rc, DType::F32);
  size_t off = 0;
  for (int s = 0; s < n; ++s)
    for (size_t i = 0; i < rc[s]; ++i, ++off) ASSERT_EQ(recvf[off], static_cast<float>(s * 100 + me + 0.5 * i));
}

TEST(Collectives, SendRecvRing) {
  auto& c = world();
  const int n = c.size(), me = c.rank();
  std::vector<int64_t> out(1000, me), in(1000, -1);
  auto r = c.irecv(in.data(), in.size(), DType::I64, (me + n - 1) % n, 7);
  auto s = c.isend(out.data(), out.size(), DType::I64, (me + 1) % n, 7);
  s->wait();
  r->wait();
  for (auto x : in) ASSERT_EQ(x, (me + n - 1) % n);
  c.barrier();
}

TEST(Collectives, NonBlockingOverlapsComputation) {
  auto& c = world();
  const size_t count = 1 << 20;
  std::vector<float> x(count, static_cast<float>(c.rank() + 1)), y(count, 0.f);
  auto w = c.iall_reduce(x.data(), y.data(), count, DType::F32, ReduceOp::Sum);
  // computation while the reduction progresses; test() drives progress and must not block
  double acc = 0;
  int polls = 0;
  for (int it = 0; it < 200; ++it) {
    for (int j = 0; j < 20000; ++j) acc += std::sqrt(static_cast<double>(j + it));
    if (w->test()) break;
    ++polls;
  }
  w->wait();
  EXPECT_GT(acc, 0);
  const float expect = static_cast<float>(c.size() * (c.size() + 1) / 2);
  for (size_t i = 0; i < count; i += 4099) ASSERT_EQ(y[i], expect);
  EXPECT_TRUE(w->test());  // completed work stays completed
}

TEST(Groups, EveryGroupOfTheLayout) {
  const int W = world_size();
  // 8 ranks: tp 2 x pp 2 x dp 2 (ep 2 over dp); otherwise the largest simple layout.
  int tp = W % 2 == 0 ? 2 : 1, pp = W % 4 == 0 && W >= 8 ? 2 : 1;
  Topology topo(W, tp, pp, (W / (tp * pp)) % 2 == 0 ? 2 : 1);
  ProcessGroups groups(topo);
  for (Group g : all_groups()) {
    SCOPED_TRACE(group_name(g));
    auto& c = groups.get(g);
    auto members = topo.members(g, groups.world_rank());
    ASSERT_EQ(c.size(), static_cast<int>(members.size()));
    ASSERT_EQ(c.world_ranks(), members);
    int64_t mine = groups.world_rank() + 1, sum = 0, expect = 0;
    c.all_reduce(&mine, &sum, 1, DType::I64, ReduceOp::Sum);
    for (int r : members) expect += r + 1;
    EXPECT_EQ(sum, expect);
    std::vector<int32_t> gathered(c.size());
    int32_t w = groups.world_rank();
    c.all_gather(&w, 1, gathered.data(), DType::I32);
    EXPECT_EQ(std::vector<int>(gathered.begin(), gathered.end()), members);
  }
}

TEST(CommsLogger, CountsBytesAndSummary) {
  auto& log = CommLogger::instance();
  CommLogConfig cfg;
  cfg.enabled = true;
  cfg.prof_all = false;
  cfg.prof_ops = {"all_reduce"};
  log.configure(cfg);
  log.reset();
  auto& c = world();
  std::vector<float> x(1 << 18, 1.f);  // 1 MiB
  for (int i = 0; i < 3; ++i) c.all_reduce(x.data(), x.data(), x.size(), DType::F32, ReduceOp::Sum);
  c.barrier();  // not in prof_ops: not logged
  auto stats = log.local();
  ASSERT_EQ(stats.size(), 1u);
  auto& [key, s] = *stats.begin();
  EXPECT_EQ(std::get<0>(key), "all_reduce");
  EXPECT_EQ(std::get<3>(key), size_t{1} << 20);
  EXPECT_EQ(s.count, 3);
  EXPECT_GT(s.seconds, 0.0);
  std::string table = log.summary(MPI_COMM_WORLD);
  if (c.rank() == 0) {
    EXPECT_NE(table.find("all_reduce"), std::string::npos) << table;
    EXPECT_NE(table.find("1048576"), std::string::npos) << table;
  }
  log.configure(CommLogConfig{});
  log.reset();
}

TEST(Comm, BusFactorsAreNcclTests) {
  EXPECT_DOUBLE_EQ(bus_factor("all_reduce", 4), 1.5);
  EXPECT_DOUBLE_EQ(bus_factor("all_gather", 4), 0.75);
  EXPECT_DOUBLE_EQ(bus_factor("reduce_scatter", 8), 0.875);
  EXPECT_DOUBLE_EQ(bus_factor("broadcast", 8), 1.0);
  EXPECT_DOUBLE_EQ(bus_factor("all_to_all", 2), 0.5);
}

TEST(Comm, HalfConversionsRoundToNearestEven) {
  EXPECT_EQ(float_to_half(1.0f), 0x3c00);
  EXPECT_EQ(float_to_half(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);        // rounds to inf
  EXPECT_EQ(float_to_half(1.0f + 1.0f / 2048), 0x3c00);  // halfway: ties to even
  EXPECT_EQ(float_to_half(5.9604645e-8f), 0x0001);   // smallest subnormal
  for (uint32_t h = 0; h < 0x7c00; ++h) ASSERT_EQ(float_to_half(half_to_float(static_cast<uint16_t>(h))), h);
}
