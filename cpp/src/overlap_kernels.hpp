// Private to the core: the compiled versions of the distance kernel, for the core and its tests.
#pragma once

#include <cstddef>
#include <vector>

namespace dfmr::detail {

// Components of the pool one kernel call takes at a time (lanes).
constexpr std::size_t kOverlapLanes = 16;

// out[l] = log N(mu_a; mu_b[l], S_a + S_b[l]) for the kOverlapLanes components of one lane group:
// Sa, mua one component (packed lower triangle, q = d (d + 1) / 2 entries, and mean); Sb, mub the
// group's packed lower triangles and means, structure of arrays (q x kOverlapLanes and
// d x kOverlapLanes); A, z scratch (q x kOverlapLanes, d x kOverlapLanes). Returns false if some
// S_a + S_b[l] is not numerically positive definite (distance.cpp has the details).
using LogOverlapKernel = bool (*)(const double* Sa, const double* mua, const double* Sb, const double* mub,
                                  std::size_t d, double* A, double* z, double* out);

// The kernel's compiled versions this CPU can run, the one the core uses first (chosen once per
// process). They give the same bits wherever FMA is available (test_distance.cpp).
const std::vector<LogOverlapKernel>& log_overlap_kernels();

}  // namespace dfmr::detail
