// The core's own four-lane exp and log (cpp/src/vector_math.hpp, private to the core) against
// the C library's in extended precision, over the ranges the distance kernel uses them on.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <limits>
#include <random>

#include "vector_math.hpp"

// Calls to the always-inlined vector helpers: the ABI note does not apply (see vector_math.hpp).
#pragma GCC diagnostic ignored "-Wpsabi"

namespace {

using dfmr::detail::exp_nonpositive;
using dfmr::detail::kExpArgMin;
using dfmr::detail::log_normal;
using dfmr::detail::Vec4;

// |got - want| in units of the last place of want (want a nonzero double).
double ulps(double got, long double want) {
  const double w = static_cast<double>(want);
  const double ulp = std::nextafter(std::abs(w), std::numeric_limits<double>::infinity()) - std::abs(w);
  return static_cast<double>(std::abs(static_cast<long double>(got) - want) / ulp);
}

TEST(VectorMath, ExpWithinTwoUlpsOnItsRange) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(kExpArgMin, 0.0);
  double worst = 0.0;
  for (int i = 0; i < 50000; ++i) {
    Vec4 x;
    for (int l = 0; l < 4; ++l) x[l] = i == 0 ? (l == 0 ? 0.0 : l == 1 ? kExpArgMin : l == 2 ? -0.0 : -1e-300) : u(rng);
    const Vec4 e = exp_nonpositive(x);
    for (int l = 0; l < 4; ++l) worst = std::max(worst, ulps(e[l], std::exp(static_cast<long double>(x[l]))));
  }
  EXPECT_LE(worst, 2.0);
  const Vec4 one = exp_nonpositive(Vec4{0.0, -0.0, 0.0, 0.0});
  EXPECT_EQ(one[0], 1.0);
  EXPECT_EQ(one[1], 1.0);
}

TEST(VectorMath, ExpIsZeroBelowItsRange) {
  const double inf = std::numeric_limits<double>::infinity();
  const Vec4 e = exp_nonpositive(Vec4{kExpArgMin - 1e-9, -700.0, -1e300, -inf});
  for (int l = 0; l < 4; ++l) EXPECT_EQ(e[l], 0.0) << l;
}

TEST(VectorMath, LogWithinTwoUlpsOverTheNormalRange) {
  // x = m 2^k over every binade of the normal doubles, plus values next to 1 (where log x is tiny
  // and only a relative error bound means anything), with e = 0 and with exponents of the size the
  // kernel's renormalised products carry.
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> mant(1.0, 2.0), near(-1e-6, 1e-6);
  std::uniform_int_distribution<int> expo(DBL_MIN_EXP - 1, DBL_MAX_EXP - 1), shift(-3000, 3000);
  const long double ln2 = 0.693147180559945309417232121458176568L;
  double worst = 0.0, worst_sum = 0.0;  // in ulps of log x; in units of eps times the larger part
  for (int i = 0; i < 50000; ++i) {
    Vec4 x, e;
    for (int l = 0; l < 4; ++l) {
      x[l] = l == 3 ? 1.0 + near(rng) : std::ldexp(mant(rng), expo(rng));
      e[l] = l >= 2 ? 0.0 : static_cast<double>(shift(rng));
    }
    const Vec4 y = log_normal(x, e);
    for (int l = 0; l < 4; ++l) {
      const long double log_x = std::log(static_cast<long double>(x[l])), shift_e = static_cast<long double>(e[l]) * ln2;
      if (e[l] == 0.0) {
        worst = std::max(worst, ulps(y[l], log_x));  // log x itself: relative accuracy, also next to 1
      } else {
        // log x + e ln 2 can cancel: the error is an ulp or two of the larger part, as for any sum.
        const long double larger = std::max(std::abs(log_x), std::abs(shift_e));
        worst_sum = std::max(worst_sum, static_cast<double>(std::abs(y[l] - (log_x + shift_e)) / larger) / DBL_EPSILON);
      }
    }
  }
  EXPECT_LE(worst, 2.0);
  EXPECT_LE(worst_sum, 2.0);
  const Vec4 edges = log_normal(Vec4{1.0, DBL_MIN, DBL_MAX, 2.0}, Vec4{0.0, 0.0, 0.0, -1.0});
  EXPECT_EQ(edges[0], 0.0);
  EXPECT_LE(ulps(edges[1], std::log(static_cast<long double>(DBL_MIN))), 2.0);
  EXPECT_LE(ulps(edges[2], std::log(static_cast<long double>(DBL_MAX))), 2.0);
  EXPECT_EQ(edges[3], 0.0);
}

}  // namespace
