// Four-lane arithmetic in GNU vector extensions (GCC, Clang: ymm registers in the AVX2 clones,
// pairs of xmm in the baseline; CMakeLists.txt requires one of these compilers), eight-lane
// vectors for AVX-512 code, and the elementary functions the distance kernel needs per pair.
// Private to the core.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels.hpp"

namespace dfmr::detail {

// The helpers are always inlined (DFMR_ALWAYS_INLINE), so the note on the ABI of vector arguments
// does not apply, and they run with the instructions of the target clone that calls them.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
// W lanes per vector: W = 4 (a ymm register in the AVX2 clones) or 8 (a zmm register, for AVX-512
// code only: elsewhere the compiler splits it through memory), for kernels written once for
// either width.
template <std::size_t W>
struct VectorTypes {
  static_assert(W == 4 || W == 8, "four or eight lanes");
  typedef double Vec __attribute__((vector_size(8 * W)));
  typedef std::uint64_t Bits __attribute__((vector_size(8 * W)));
};
template <std::size_t W>
using Vec = typename VectorTypes<W>::Vec;
template <std::size_t W>
using Bits = typename VectorTypes<W>::Bits;
using Vec4 = Vec<4>;
using Bits4 = Bits<4>;

template <std::size_t W>
DFMR_ALWAYS_INLINE inline Vec<W> load(const double* p) {
  Vec<W> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <std::size_t W>
DFMR_ALWAYS_INLINE inline void store(double* p, const Vec<W>& v) {
  std::memcpy(p, &v, sizeof v);
}
// Whether some lane of a comparison's mask is set.
template <class B>
DFMR_ALWAYS_INLINE inline bool any(const B& mask) {
  std::uint64_t r = 0;
  for (std::size_t i = 0; i < sizeof mask / sizeof r; ++i) r |= mask[i];
  return r != 0;
}

// Elementary functions, four lanes at a time: glibc's exp and log are scalar calls, and one log per
// pair and one exp per pair of components took a fifth of the distance time. Both are accurate to
// about an ulp, as glibc's are, on the ranges stated (cpp/tests/test_vector_math.cpp).

// c[0] x^(N-1) + c[1] x^(N-2) + ... + c[N-1] by Horner's rule.
template <std::size_t N>
DFMR_ALWAYS_INLINE inline Vec4 horner(const Vec4& x, const double (&c)[N]) {
  Vec4 p = Vec4{} + c[0];
  for (std::size_t i = 1; i < N; ++i) p = p * x + c[i];
  return p;
}

// fdlibm's split of ln 2: k * kLn2Hi is exact for |k| < 2^20.
constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;

// log(x) + e ln 2 for positive normal finite x (e: small integers, as doubles): log x to about an
// ulp, the sum to about an ulp of its larger part (it can cancel). x = 2^k m with m in
// [sqrt(1/2), sqrt(2)), and log m = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...), s = (m - 1) / (m + 1),
// |s| <= 0.172: ten terms leave a truncation error below 1e-18 relative (m - 1 is exact). k comes
// from the exponent bits through the mantissa of 2^52 (AVX2 has no int64 -> double conversion).
DFMR_ALWAYS_INLINE inline Vec4 log_normal(const Vec4& x, const Vec4& e) {
  const Bits4 b = (Bits4)(x);
  const Bits4 biased_bits = (b >> 52) | 0x4330000000000000ull;
  const Vec4 biased = (Vec4)(biased_bits) - 0x1p52;
  const Bits4 m_bits = (b & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
  Vec4 m = (Vec4)(m_bits);
  const Bits4 high_bits = (Bits4)(m > 1.4142135623730951) & 0x3FF0000000000000ull;
  const Vec4 high = (Vec4)(high_bits);  // 1.0 where m > sqrt(2), else 0.0
  m *= 1.0 - 0.5 * high;
  const Vec4 n = (biased - 1023.0 + high) + e;
  const Vec4 s = (m - 1.0) / (m + 1.0), s2 = s * s;
  constexpr double c[] = {1.0 / 21, 1.0 / 19, 1.0 / 17, 1.0 / 15, 1.0 / 13, 1.0 / 11, 1.0 / 9, 1.0 / 7, 1.0 / 5, 1.0 / 3};
  const Vec4 p = horner(s2, c);
  return n * kLn2Hi + (n * kLn2Lo + (2.0 * s + 2.0 * s * s2 * p));
}

// exp(y) for y in [kExpArgMin, 0], and 0 below it: y = n ln 2 + r, |r| <= ln 2 / 2 (n by the
// 1.5 * 2^52 rounding trick, whose low bits then hold n), e^r by its Taylor polynomial of degree 13
// (truncation below 5e-18 relative), times 2^n built from its bits (n >= -93: a normal number).
constexpr double kExpArgMin = -64.0;
DFMR_ALWAYS_INLINE inline Vec4 exp_nonpositive(const Vec4& y) {
  constexpr double kShift = 0x1.8p52, kLog2e = 1.4426950408889634;
  const auto below = y < kExpArgMin;
  const Bits4 y_bits = ((Bits4)(y) & ~(Bits4)(below)) |
                       ((Bits4)(below) & 0xC050000000000000ull);  // clamped to -64
  const Vec4 x = (Vec4)(y_bits);
  const Vec4 t = x * kLog2e + kShift;
  const Vec4 n = t - kShift;
  const Vec4 r = (x - n * kLn2Hi) - n * kLn2Lo;
  constexpr double c[] = {1.0 / 6227020800, 1.0 / 479001600, 1.0 / 39916800, 1.0 / 3628800, 1.0 / 362880,
                          1.0 / 40320,      1.0 / 5040,      1.0 / 720,      1.0 / 120,     1.0 / 24,
                          1.0 / 6,          0.5,             1.0,            1.0};  // 1 / 13!, ..., 1 / 0!
  const Vec4 p = horner(r, c);
  const Bits4 scale_bits = (((Bits4)(t) - 0x4338000000000000ull) + 1023u) << 52;  // 2^n
  const Vec4 v = p * (Vec4)(scale_bits);
  const Bits4 out = (Bits4)(v) & ~(Bits4)(below);
  return (Vec4)(out);
}

#pragma GCC diagnostic pop

}  // namespace dfmr::detail
