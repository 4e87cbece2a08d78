// A latency histogram with about 1.5% precision from 1 µs to over an hour: 64 linear
// sub-buckets per power of two of nanoseconds. Recording is a few instructions and no
// allocation; histograms of several threads merge.
#ifndef SPOOL_TOOLS_BENCH_HISTOGRAM_H_
#define SPOOL_TOOLS_BENCH_HISTOGRAM_H_

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>

namespace spool::bench {

class Histogram {
 public:
  void Record(int64_t ns) {
    if (ns < 0) ns = 0;
    ++counts_[Bucket(static_cast<uint64_t>(ns))];
    ++count_;
    max_ = std::max(max_, ns);
  }
  void Merge(const Histogram& o) {
    for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
    count_ += o.count_;
    max_ = std::max(max_, o.max_);
  }
  uint64_t count() const { return count_; }
  int64_t max() const { return max_; }
  // The value below which a fraction q (0..1) of the recordings fall (upper bound of its
  // bucket, so never optimistic).
  int64_t Quantile(double q) const {
    if (count_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(count_ - 1)) + 1, seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min<int64_t>(UpperBound(i), max_);
    }
    return max_;
  }

 private:
  static constexpr int kSubBits = 6;  // 64 sub-buckets
  static constexpr size_t kBuckets = (64 - kSubBits + 1) << kSubBits;
  static size_t Bucket(uint64_t v) {
    if (v < (1u << kSubBits)) return v;
    int exp = 63 - std::countl_zero(v) - kSubBits + 1;  // >= 1
    return (static_cast<size_t>(exp) << kSubBits) + ((v >> (exp - 1)) & ((1u << kSubBits) - 1));
  }
  static int64_t UpperBound(size_t bucket) {
    size_t exp = bucket >> kSubBits, sub = bucket & ((1u << kSubBits) - 1);
    if (exp == 0) return static_cast<int64_t>(sub);
    return static_cast<int64_t>(((uint64_t{1} << kSubBits) + sub + 1) << (exp - 1)) - 1;
  }

  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  int64_t max_ = 0;
};

}  // namespace spool::bench

#endif  // SPOOL_TOOLS_BENCH_HISTOGRAM_H_
