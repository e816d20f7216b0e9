// Private to the core: cross distances of one set of mixtures asked for more than once.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "dfmr/distance.hpp"
#include "dfmr/mixture.hpp"

namespace dfmr::detail {

// Entries (rows[r], cols[c]) of pairwise_l2_scaled(mixtures), as cross_l2_scaled gives them (bit
// for bit, same exponent), for several requests over the same mixtures: the lane layout of the
// mixtures and their m norms (which the exponent needs) are computed once, at construction, not
// per request. `mixtures` must outlive the object.
class CrossL2 {
 public:
  CrossL2(const std::vector<Mixture>& mixtures, int n_threads);
  ~CrossL2();
  CrossL2(const CrossL2&) = delete;
  CrossL2& operator=(const CrossL2&) = delete;
  ScaledDistances operator()(const std::vector<std::size_t>& rows, const std::vector<std::size_t>& cols) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dfmr::detail
