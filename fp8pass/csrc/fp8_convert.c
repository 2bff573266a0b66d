/* FP8 (float8_e4m3fn, float8_e5m2) -> bfloat16 / float16 / float32 on the CPU, bit for bit what
 * torch's ``weight.to(dtype)`` gives, NaN included (bf16: the canonical 0x7FC0 whatever the sign;
 * fp16 and fp32: the sign and the mantissa left-aligned, quiet bit set).
 *
 * Plain C99, no torch headers: fp8pass/native.py compiles it once per machine with the system C
 * compiler into fp8pass's cache folder and calls it through ctypes from the ``fp8pass::fp8_to_cpu``
 * op. The element loop is branch-free integer arithmetic that the compiler vectorizes (SSE2 at -O3
 * on any x86-64; AVX2 / AVX-512 with -DFP8PASS_CLONES, one body per ISA picked by the dynamic
 * loader). Built with -fopenmp, a large conversion is split over threads; the OpenMP runtime is the
 * one torch already loaded (libgomp.so.1), as for Inductor's own CPU kernels.
 *
 * Build: cc -O3 -shared -fPIC -std=c99 [-DFP8PASS_CLONES] [-fopenmp] fp8_convert.c -o fp8_convert.so
 */
#include <stddef.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define FP8PASS_F16C 1
#endif

/* Bumped whenever a signature below changes; fp8pass/native.py checks it after loading. */
#define FP8PASS_ABI_VERSION 4

/* Source kinds and target kinds; kind = 3 * src + dst. */
enum { SRC_E4M3FN = 0, SRC_E5M2 = 1 };
enum { DST_BF16 = 0, DST_FP16 = 1, DST_FP32 = 2 };

#if defined(FP8PASS_CLONES) && defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
/* One body per ISA, chosen once by the dynamic loader (ifunc); no -march=native needed. */
#define VEC __attribute__((target_clones("arch=skylake-avx512", "avx2", "default")))
#else
#define VEC __attribute__((noinline))
#endif

/* a where c (0 or 1) else b, without a branch: compilers turn it into vector blends */
static inline uint16_t sel16(uint16_t c, uint16_t a, uint16_t b) {
    uint16_t m = (uint16_t)(0u - c);
    return (uint16_t)((a & m) | (b & (uint16_t)~m));
}

/* The 16-bit bits of FP8 byte `b` in bf16 (tm = 7, tb = 127, te = 8) or fp16 (10, 15, 5), all in
 * 16-bit arithmetic (16 lanes per AVX2 vector): every parameter is a constant once inlined.
 * Source: e4m3fn (3 mantissa bits, bias 7, NaN = S.1111.111, no infinity) or e5m2 (2, 15, IEEE).
 * A source subnormal m * 2^(1 - sb - sm) (m < 8) is normal in every target: its leading one is
 * at bit e = (m >= 2) + (m >= 4); the exponent is re-biased by e and the mantissa shifted up by
 * tm - e, written as a multiply (SSE2/AVX2 have no per-lane 16-bit variable shift).
 * Returns NaN as .to() does: with bf16 = 1 the canonical 0x7FC0 whatever the sign; else the sign,
 * the source mantissa left-aligned, the quiet bit set (fp16; fp32's top half through to32).
 * Comparisons are written as masks and equalities: AVX2 has no unsigned 16-bit compare, and gcc 12
 * widened `mag < (1 << sm)` (and `(mag >> sm) == 0`) to 32-bit lanes, 1.5x slower. */
static inline uint16_t to16(uint16_t b, int e5m2, int tm, int tb, int te, int bf16) {
    const int sm = e5m2 ? 2 : 3, sb = e5m2 ? 15 : 7;
    const uint16_t mant_mask = (uint16_t)((1 << tm) - 1), exp_ones = (uint16_t)(((1 << te) - 1) << tm);
    uint16_t sign = (uint16_t)((b & 0x80) << 8);
    uint16_t mag = b & 0x7F;
    uint16_t m = (uint16_t)(b & ((1 << sm) - 1));
    uint16_t bits;
    if (e5m2 && tm == 10) {
        bits = (uint16_t)(mag << 8); /* e5m2 is fp16 with its low byte cut off */
    } else {
        uint16_t normal = (uint16_t)((mag << (tm - sm)) + ((tb - sb) << tm));
        uint16_t e = (uint16_t)(((m >> 1) != 0) + (sm == 3 ? ((m >> 2) != 0) : 0));
        uint16_t mult = sel16((m >> 1) != 0, (uint16_t)(1 << (tm - 1)), (uint16_t)(1 << tm));
        if (sm == 3) mult = sel16((m >> 2) != 0, (uint16_t)(1 << (tm - 2)), mult);
        uint16_t sub = (uint16_t)(((tb - sb - sm + 1 + e) << tm) | ((uint16_t)(m * mult) & mant_mask));
        bits = sel16((mag & (0x7F & ~((1 << sm) - 1))) == 0, sel16(mag == 0, 0, sub), normal);
        if (e5m2) bits = sel16((mag >> 2) == 0x1F, exp_ones, bits); /* infinity */
    }
    bits |= sign;
    uint16_t nan = bf16 ? (uint16_t)0x7FC0
                        : (uint16_t)(sign | exp_ones | (1 << (tm - 1)) | (m << (tm - sm)));
    return sel16(e5m2 ? (((mag >> 2) == 0x1F) & (m != 0)) : (mag == 0x7F), nan, bits);
}

/* fp32: every FP8 value is exact in bf16, whose bits are fp32's top half, and so is a NaN's
 * sign, quiet bit and (left-aligned) payload: fp32's low half is always zero. bf16 = 0 gives the
 * payload-keeping NaN instead of bf16's canonical one. */
static inline uint32_t to32(uint16_t b, int e5m2) {
    return (uint32_t)to16(b, e5m2, 7, 127, 8, 0) << 16;
}

#define LOOP16(NAME, E5M2, TM, TB, TE, BF16)                                                    \
    VEC static void NAME(const uint8_t *restrict s, uint16_t *restrict d, int64_t n) {        \
        for (int64_t i = 0; i < n; i++) d[i] = to16(s[i], E5M2, TM, TB, TE, BF16);           \
    }
#define LOOP32(NAME, E5M2)                                                                      \
    VEC static void NAME(const uint8_t *restrict s, uint32_t *restrict d, int64_t n) {        \
        for (int64_t i = 0; i < n; i++) d[i] = to32(s[i], E5M2);                             \
    }

LOOP16(e4m3_bf16, 0, 7, 127, 8, 1)
LOOP16(e4m3_fp16, 0, 10, 15, 5, 0)
LOOP32(e4m3_fp32, 0)
LOOP16(e5m2_bf16, 1, 7, 127, 8, 1)
LOOP16(e5m2_fp16, 1, 10, 15, 5, 0)
LOOP32(e5m2_fp32, 1)

static void convert_range(int kind, const uint8_t *s, void *d, int64_t lo, int64_t hi) {
    int64_t n = hi - lo;
    s += lo;
    switch (kind) {
    case 0: e4m3_bf16(s, (uint16_t *)d + lo, n); break;
    case 1: e4m3_fp16(s, (uint16_t *)d + lo, n); break;
    case 2: e4m3_fp32(s, (uint32_t *)d + lo, n); break;
    case 3: e5m2_bf16(s, (uint16_t *)d + lo, n); break;
    case 4: e5m2_fp16(s, (uint16_t *)d + lo, n); break;
    case 5: e5m2_fp32(s, (uint32_t *)d + lo, n); break;
    default: break;
    }
}

/* ---- scaled: out = dst(float(fp8) * scale[row]), what torch's (q.float() * scale).to(dst) gives */

static inline float bits_f32(uint32_t u) {
    union { uint32_t u; float f; } v = {u};
    return v.f;
}
static inline uint32_t f32_bits(float f) {
    union { float f; uint32_t u; } v = {f};
    return v.u;
}

/* float32 -> bfloat16, round to nearest even; NaN -> 0x7FC0 (c10::BFloat16's rule) */
static inline uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t r = (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    return sel16((u & 0x7FFFFFFFu) > 0x7F800000u, (uint16_t)0x7FC0, r);
}

/* float32 -> float16, round to nearest even (IEEE, what F16C's vcvtps2ph gives): overflow to
 * infinity, subnormals rounded at 2^-24. NaN keeps sign and top payload bits, quiet. */
static inline uint16_t f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7FFFFFFFu;
    uint16_t normal = (uint16_t)((a - 0x38000000u + 0x0FFFu + ((a >> 13) & 1u)) >> 13);
    /* below 2^-14: the integer nearest a * 2^24 (ties to even through the 2^23 trick), exact */
    float scaled = bits_f32(a) * 16777216.0f;
    uint16_t sub = (uint16_t)(uint32_t)((scaled + 8388608.0f) - 8388608.0f);
    uint16_t nan = (uint16_t)(0x7E00u | ((a >> 13) & 0x3FFu));
    uint16_t r = a < 0x38800000u ? sub : normal;
    r = a >= 0x477FF000u ? (uint16_t)0x7C00 : r;
    r = a > 0x7F800000u ? nan : r;
    return (uint16_t)(sign | r);
}

/* Every FP8 value as float32 (exact), per source format: the scaled loops read the table, which
 * measured ~2x faster than converting each byte's bits before the multiply (a gather, then one
 * multiply and one rounding per element). Filled once when the library loads. */
static float VALUES[2][256];

__attribute__((constructor)) static void fill_values(void) {
    for (int b = 0; b < 256; b++) {
        VALUES[0][b] = bits_f32(to32((uint16_t)b, 0));
        VALUES[1][b] = bits_f32(to32((uint16_t)b, 1));
    }
}

/* rows [r0, r1) of a (rows, inner) weight, row r times scale[r] (per_row) or scale[0]: one call
 * per range, so that a small weight pays one dispatch through the ISA clones, not one per row */
#define SCALED(NAME, E5M2, OUT_T, FROM_F32)                                                        \
    VEC static void NAME(const uint8_t *restrict s, OUT_T *restrict d, int64_t r0, int64_t r1,     \
                         int64_t inner, const float *restrict scale, int per_row) {                 \
        const float *restrict values = VALUES[E5M2];                                               \
        for (int64_t r = r0; r < r1; r++) {                                                        \
            const float sc = scale[per_row ? r : 0];                                               \
            const uint8_t *sr = s + r * inner;                                                     \
            OUT_T *dr = d + r * inner;                                                             \
            for (int64_t i = 0; i < inner; i++) dr[i] = FROM_F32(values[sr[i]] * sc);              \
        }                                                                                          \
    }
#define F32_OUT(f) f32_bits(f)
SCALED(e4m3_bf16_s, 0, uint16_t, f32_to_bf16)
SCALED(e4m3_fp16_s, 0, uint16_t, f32_to_f16)
SCALED(e4m3_fp32_s, 0, uint32_t, F32_OUT)
SCALED(e5m2_bf16_s, 1, uint16_t, f32_to_bf16)
SCALED(e5m2_fp16_s, 1, uint16_t, f32_to_f16)
SCALED(e5m2_fp32_s, 1, uint32_t, F32_OUT)

#ifdef FP8PASS_F16C
/* FP8 -> bf16 times a per-row scale, 16 elements per step, for x86 CPUs with AVX2 and F16C (every
 * x86 CPU since 2013). The gather of the table loop is slow (Zen 3: ~0.7 ns an element, most of a
 * small layer's conversion); this goes through fp16, which the CPU converts to float32 in one
 * instruction (exactly, subnormals included, whatever MXCSR says):
 * - e5m2 is fp16 with its low byte cut off: the fp16 bits are b << 8, infinity and NaN included;
 * - e4m3fn's bits shifted into fp16's place, (b & 0x7F) << 7 | sign, are its value times 2^-8
 *   (normal and subnormal alike: both formats have 3+ mantissa bits below a 4/5-bit exponent), so
 *   the float32 times 256 (exact) is the value; S.1111.111 (NaN) is made an fp16 NaN.
 * Then the same float32 multiply by the scale and the same round-to-nearest-even to bf16 as the
 * table loop (a NaN product gives 0x7FC0), so the bits are the table loop's. The row's tail (fewer
 * than 16 elements) goes through the table loop. */
__attribute__((target("avx2,f16c"))) static inline __m256i bf16_of(__m256 x) {
    __m256i u = _mm256_castps_si256(x);
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), odd), 16);
    __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    return _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), nan);
}

__attribute__((target("avx2,f16c"))) static void bf16_scaled_f16c(int e5m2, const uint8_t *s, uint16_t *d,
                                                                  int64_t r0, int64_t r1, int64_t inner,
                                                                  const float *scale, int per_row) {
    const __m256 k256 = _mm256_set1_ps(e5m2 ? 1.0f : 256.0f);
    for (int64_t r = r0; r < r1; r++) {
        const __m256 sc = _mm256_set1_ps(scale[per_row ? r : 0]);
        const uint8_t *sr = s + r * inner;
        uint16_t *dr = d + r * inner;
        int64_t i = 0;
        for (; i + 16 <= inner; i += 16) {
            __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(sr + i)));
            __m256i h;
            if (e5m2) {
                h = _mm256_slli_epi16(b, 8);
            } else {
                __m256i mag = _mm256_and_si256(b, _mm256_set1_epi16(0x7F));
                __m256i sign = _mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x80)), 8);
                __m256i nan = _mm256_cmpeq_epi16(mag, _mm256_set1_epi16(0x7F));
                h = _mm256_or_si256(_mm256_blendv_epi8(_mm256_slli_epi16(mag, 7), _mm256_set1_epi16(0x7E00), nan),
                                    sign);
            }
            __m256 lo = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h)), k256), sc);
            __m256 hi = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)), k256), sc);
            __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(bf16_of(lo), bf16_of(hi)), 0xD8);
            _mm256_storeu_si256((__m256i *)(dr + i), packed);
        }
        if (i < inner) {
            if (e5m2)
                e5m2_bf16_s(sr + i, dr + i, 0, 1, inner - i, scale + (per_row ? r : 0), 0);
            else
                e4m3_bf16_s(sr + i, dr + i, 0, 1, inner - i, scale + (per_row ? r : 0), 0);
        }
    }
}

static int HAVE_F16C;

__attribute__((constructor)) static void detect_f16c(void) {
    __builtin_cpu_init();
    HAVE_F16C = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
}
#endif

static void scaled_rows(int kind, const uint8_t *s, void *d, int64_t r0, int64_t r1, int64_t inner,
                        const float *scale, int per_row) {
#ifdef FP8PASS_F16C
    if (HAVE_F16C && (kind == 0 || kind == 3)) {
        bf16_scaled_f16c(kind == 3, s, (uint16_t *)d, r0, r1, inner, scale, per_row);
        return;
    }
#endif
    switch (kind) {
    case 0: e4m3_bf16_s(s, (uint16_t *)d, r0, r1, inner, scale, per_row); break;
    case 1: e4m3_fp16_s(s, (uint16_t *)d, r0, r1, inner, scale, per_row); break;
    case 2: e4m3_fp32_s(s, (uint32_t *)d, r0, r1, inner, scale, per_row); break;
    case 3: e5m2_bf16_s(s, (uint16_t *)d, r0, r1, inner, scale, per_row); break;
    case 4: e5m2_fp16_s(s, (uint16_t *)d, r0, r1, inner, scale, per_row); break;
    case 5: e5m2_fp32_s(s, (uint32_t *)d, r0, r1, inner, scale, per_row); break;
    default: break;
    }
}

/* `flags` packs what a call needs besides its pointers and sizes, so that a call from Python
 * through ctypes converts few arguments (each costs ~0.14 us): bits 0-2 the kind (3 * source +
 * target), bit 3 per_row, bits 8 and up the number of OpenMP threads (the caller passes 1 for a
 * conversion too small to split). */
#define FLAG_KIND(f) ((int)((f) & 7))
#define FLAG_PER_ROW(f) ((int)(((f) >> 3) & 1))
#define FLAG_THREADS(f) ((int)((f) >> 8))

/* dst = dst type(float(src) * scale), the pointers in the order of the op's arguments (weight,
 * scale, then its output): src is (rows, inner) FP8 bytes, scale is `rows` float32 values
 * (per_row) or one; dst needs no alignment and must not overlap src. Rows are split over the
 * flags' threads when built with OpenMP. Returns 0, or -1 for an unknown kind. */
int fp8pass_convert_scaled(const void *src, const float *scale, void *dst, int64_t rows, int64_t inner,
                           int64_t flags) {
    int kind = FLAG_KIND(flags), per_row = FLAG_PER_ROW(flags), nthreads = FLAG_THREADS(flags);
    if (kind > 5) return -1;
    if (rows <= 0 || inner <= 0) return 0;
#ifdef _OPENMP
    if (nthreads > 1 && rows > 1) {
        if (rows < nthreads) nthreads = (int)rows;
#pragma omp parallel num_threads(nthreads)
        {
            int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
            scaled_rows(kind, (const uint8_t *)src, dst, rows * t / nt, rows * (t + 1) / nt, inner, scale,
                        per_row);
        }
        return 0;
    }
#else
    (void)nthreads;
#endif
    scaled_rows(kind, (const uint8_t *)src, dst, 0, rows, inner, scale, per_row);
    return 0;
}

int fp8pass_abi_version(void) { return FP8PASS_ABI_VERSION; }

/* 1 when built with OpenMP (fp8pass_convert can split a conversion over threads), else 0. */
int fp8pass_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* Convert the n FP8 bytes at src into dst (n elements of 2 or 4 bytes, per kind), over the
 * flags' threads when built with OpenMP (bit 3 of flags is unused). src and dst need no alignment
 * and must not overlap. Returns 0, or -1 for an unknown kind. */
int fp8pass_convert(const void *src, void *dst, int64_t n, int64_t flags) {
    int kind = FLAG_KIND(flags), nthreads = FLAG_THREADS(flags);
    if (kind > 5) return -1;
    if (n <= 0) return 0;
#ifdef _OPENMP
    if (nthreads > 1) {
        /* whole 64-element blocks: every thread's stores start on its own cache line */
        int64_t blocks = (n + 63) / 64;
        if (blocks < nthreads) nthreads = (int)blocks;
#pragma omp parallel num_threads(nthreads)
        {
            int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
            int64_t lo = (blocks * t / nt) * 64, hi = (blocks * (t + 1) / nt) * 64;
            if (hi > n) hi = n;
            if (lo < hi) convert_range(kind, (const uint8_t *)src, dst, lo, hi);
        }
        return 0;
    }
#else
    (void)nthreads;
#endif
    convert_range(kind, (const uint8_t *)src, dst, 0, n);
    return 0;
}

/* ---- quantize: dst = fp8(clamp(float(src) / scale[row], -fmax, fmax)) with
 * scale[row] = max(absmax, 1e-12f) / fmax over the row (per_row) or the whole weight: bit for bit
 * what fp8pass.quantize.quantize_weight computes with torch ops (float32 division, clamp, then
 * c10's round-to-nearest-even conversion, of which only the in-range branches are reachable after
 * the clamp), in two passes over the weight instead of torch's eight. */

/* c10's fp8e4m3fn_from_fp32_value / fp8e5m2_from_fp32_value for |f| <= the format's max, branch
 * free: the subnormal range adds a magic number (a float add, rounding as torch's does), the
 * normal range re-biases the exponent and rounds with integer adds. */
static inline uint8_t fp8_of(float f, int e5m2) {
    const int m = e5m2 ? 2 : 3, bias = e5m2 ? 15 : 7;
    const uint32_t denorm_mask = (uint32_t)((127 - bias) + (23 - m) + 1) << 23;
    const uint32_t fmax_bits = e5m2 ? 0x47600000u : 0x43E00000u; /* 57344, 448 */
    uint32_t bits = f32_bits(f), sign = bits & 0x80000000u;
    bits ^= sign;
    /* clamp(f, -fmax, fmax): for a non-NaN float, the magnitude's bits order as the magnitude */
    bits = bits < fmax_bits ? bits : fmax_bits;
    uint32_t sub = f32_bits(bits_f32(bits) + bits_f32(denorm_mask)) - denorm_mask;
    uint32_t odd = (bits >> (23 - m)) & 1u;
    uint32_t normal = (bits + ((uint32_t)(bias - 127) << 23) + ((1u << (22 - m)) - 1u) + odd) >> (23 - m);
    uint32_t is_sub = bits < ((uint32_t)(127 - bias + 1) << 23);
    uint32_t r = (sub & (0u - is_sub)) | (normal & ~(0u - is_sub));
    return (uint8_t)((r & 0xFFu) | (sign >> 24));
}

/* |x| as ordered integer bits: bf16 (bits << 16) and fp32 alike; above 0x7F800000 is NaN */
#define QSRC_BF16 0
#define QSRC_FP32 1

static inline __attribute__((always_inline)) uint32_t abs_bits(const void *s, int64_t i, int src) {
    return src == QSRC_BF16 ? ((uint32_t)((const uint16_t *)s)[i] << 16) & 0x7FFFFFFFu
                            : ((const uint32_t *)s)[i] & 0x7FFFFFFFu;
}

#define AMAX(NAME, SRC)                                                                          \
    VEC static uint32_t NAME(const void *restrict s, int64_t lo, int64_t hi) {                   \
        uint32_t m = 0;                                                                         \
        for (int64_t i = lo; i < hi; i++) {                                                     \
            uint32_t a = abs_bits(s, i, SRC);                                                   \
            m = a > m ? a : m;                                                                  \
        }                                                                                       \
        return m;                                                                               \
    }
AMAX(amax_bf16, QSRC_BF16)
AMAX(amax_fp32, QSRC_FP32)

#define QUANT(NAME, SRC, E5M2)                                                                   \
    VEC static void NAME(const void *restrict s, uint8_t *restrict d, int64_t lo, int64_t hi,   \
                         float sc) {                                                            \
        for (int64_t i = lo; i < hi; i++) {                                                     \
            float f = (SRC == QSRC_BF16 ? bits_f32((uint32_t)((const uint16_t *)s)[i] << 16)   \
                                        : ((const float *)s)[i]) / sc;                          \
            d[i] = fp8_of(f, E5M2); /* clamps */                                                \
        }                                                                                       \
    }
QUANT(quant_bf16_e4m3, QSRC_BF16, 0)
QUANT(quant_bf16_e5m2, QSRC_BF16, 1)
QUANT(quant_fp32_e4m3, QSRC_FP32, 0)
QUANT(quant_fp32_e5m2, QSRC_FP32, 1)

static uint32_t amax_range(const void *s, int64_t lo, int64_t hi, int src) {
    return src == QSRC_BF16 ? amax_bf16(s, lo, hi) : amax_fp32(s, lo, hi);
}

static void quant_range(const void *s, uint8_t *d, int64_t lo, int64_t hi, float sc, int src, int e5m2) {
    if (src == QSRC_BF16)
        (e5m2 ? quant_bf16_e5m2 : quant_bf16_e4m3)(s, d, lo, hi, sc);
    else
        (e5m2 ? quant_fp32_e5m2 : quant_fp32_e4m3)(s, d, lo, hi, sc);
}

/* flags: bit 0 the source (0 bf16, 1 fp32), bit 1 the target (0 e4m3fn, 1 e5m2), bit 3 per_row,
 * bits 8 and up the threads. scale receives `rows` values (per_row) or one. Per row, each row is
 * quantized right after its absmax, while it is still in cache: one pass over the weight. Returns
 * 0; 1 when the weight holds a NaN or an infinity (dst and scale are then garbage: fp8pass
 * quantizes such a weight with torch, which decides what it becomes); -1 for bad flags. */
int fp8pass_quantize(const void *src, float *scale, uint8_t *dst, int64_t rows, int64_t inner, int64_t flags) {
    const int s_kind = (int)(flags & 1), e5m2 = (int)((flags >> 1) & 1), per_row = (int)((flags >> 3) & 1);
    int nthreads = FLAG_THREADS(flags);
    if (flags & 4) return -1;
    if (rows <= 0 || inner <= 0) return 0;
    const float fmax = e5m2 ? 57344.0f : 448.0f;
    int bad = 0;
    uint32_t whole = 0;
    if (nthreads < 1 || rows < 2) nthreads = 1;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) reduction(| : bad) reduction(max : whole) schedule(static)
#endif
    for (int64_t r = 0; r < rows; r++) {
        uint32_t m = amax_range(src, r * inner, (r + 1) * inner, s_kind);
        bad |= m >= 0x7F800000u;
        whole = m > whole ? m : whole;
        if (per_row && m < 0x7F800000u) {
            scale[r] = bits_f32(m) > 1e-12f ? bits_f32(m) / fmax : 1e-12f / fmax;
            quant_range(src, dst, r * inner, (r + 1) * inner, scale[r], s_kind, e5m2);
        }
    }
    (void)nthreads;
    if (bad) return 1;
    if (per_row) return 0;
    scale[0] = bits_f32(whole) > 1e-12f ? bits_f32(whole) / fmax : 1e-12f / fmax;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
    for (int64_t r = 0; r < rows; r++) quant_range(src, dst, r * inner, (r + 1) * inner, scale[0], s_kind, e5m2);
    return 0;
}
