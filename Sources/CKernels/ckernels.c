// The fused pre-rank scoring loop. See include/ckernels.h for shapes.
//
// Structure (faiss/ggml style): dtype dispatched once per call, outside the candidate loop;
// per block of PK_BLOCK candidates: (1) gather + T dot products per row, prefetching the row
// `prefetch` candidates ahead, dots stored task-major; (2) logit chain + sigmoid, 8 candidates
// per AVX2 vector; (3) fusion in double and a threshold pre-filter for the caller's top-K.
// No allocation: the caller passes scratch. A scalar reference sits beside every SIMD path.
//
// Two implementations of the entry points live here: the AVX2/FMA/F16C one (functions compiled
// with target attributes, so no ISA flag is needed on any target) and a portable C one; the
// public pk_* functions pick one at the first call (see "Run-time dispatch" at the end).

// Fusion is computed in double exactly as Swift's FusionPolicy.score does (no FMA contraction),
// so the scores the kernel ranks by are bit-identical to the Swift formula.
#pragma clang fp contract(off)

#include "ckernels.h"
#include <immintrin.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// Entry points, defined once per ISA (PK_DEFINE_ENTRIES(avx2) inside the target region, (portable)
// after it) from that ISA's block_dots_ / block_chain_, so each copy inlines its own kernels and
// the fusion expression is the same text in both. The public pk_* functions dispatch at run time.
//
// Scratch layout: dots [T·B] | probs [T·B] | scores [B] doubles (2·B floats), 32-byte aligned
// sections given a 32-byte-aligned base (B = 256).
#define PK_DEFINE_ENTRIES(ISA)                                                                      \
    static void probabilities_##ISA(const pk_kernel *K, const int32_t *rows, int64_t start, int64_t n, \
                                    float *scratch, float *out) {                                  \
        const int t = K->t;                                                                        \
        float *dots = scratch, *probs = scratch + (size_t)t * PK_BLOCK;                            \
        for (int64_t b0 = 0; b0 < n; b0 += PK_BLOCK) {                                             \
            const int64_t m = n - b0 < PK_BLOCK ? n - b0 : PK_BLOCK;                               \
            block_dots_##ISA(K, rows, start, b0, m, n, dots);                                      \
            block_chain_##ISA(K, dots, probs, m);                                                  \
            for (int64_t i = 0; i < m; i++)                                                        \
                for (int k = 0; k < t; k++) out[(b0 + i) * t + k] = probs[k * PK_BLOCK + i];       \
        }                                                                                          \
    }                                                                                              \
    static void dots_##ISA(const pk_kernel *K, const int32_t *rows, int64_t start, int64_t n,      \
                           float *scratch, float *out) {                                           \
        const int t = K->t;                                                                        \
        float *dots = scratch;                                                                     \
        for (int64_t b0 = 0; b0 < n; b0 += PK_BLOCK) {                                             \
            const int64_t m = n - b0 < PK_BLOCK ? n - b0 : PK_BLOCK;                               \
            block_dots_##ISA(K, rows, start, b0, m, n, dots);                                      \
            for (int64_t i = 0; i < m; i++)                                                        \
                for (int k = 0; k < t; k++) out[(b0 + i) * t + k] = dots[k * PK_BLOCK + i];       \
        }                                                                                          \
    }                                                                                              \
    /* Fusion: the same expression and evaluation order as FusionPolicy.score. */                  \
    static int64_t score_filter_##ISA(const pk_kernel *K, const pk_fusion *F, const int32_t *rows, \
                                      int64_t start, int64_t n, const float *relevance,            \
                                      double threshold, float *scratch, int32_t *kept_index,       \
                                      double *kept_score) {                                        \
        const int t = K->t;                                                                        \
        float *dots = scratch, *probs = scratch + (size_t)t * PK_BLOCK;                            \
        double *scores = (double *)(scratch + (size_t)2 * t * PK_BLOCK);                           \
        const float *ctr = probs, *ctcvr = probs + (size_t)(t - 1) * PK_BLOCK;                     \
        const double alpha = F->alpha, beta = F->beta, gamma = F->gamma;                           \
        int64_t kept = 0;                                                                          \
        for (int64_t b0 = 0; b0 < n; b0 += PK_BLOCK) {                                             \
            const int64_t m = n - b0 < PK_BLOCK ? n - b0 : PK_BLOCK;                               \
            block_dots_##ISA(K, rows, start, b0, m, n, dots);                                      \
            block_chain_##ISA(K, dots, probs, m);                                                  \
            if (F->formula == PK_ADDITIVE) {                                                       \
                if (relevance) {                                                                   \
                    const float *rel = relevance + b0;                                             \
                    for (int64_t i = 0; i < m; i++)                                                \
                        scores[i] = alpha * (double)ctr[i] + beta * (double)ctcvr[i] + gamma * (double)rel[i]; \
                } else {                                                                           \
                    const double g0 = gamma * 0.0;                                                 \
                    for (int64_t i = 0; i < m; i++)                                                \
                        scores[i] = alpha * (double)ctr[i] + beta * (double)ctcvr[i] + g0;         \
                }                                                                                  \
            } else {                                                                               \
                for (int64_t i = 0; i < m; i++)                                                    \
                    scores[i] = pow((double)ctr[i], alpha) * pow((double)ctcvr[i], beta);          \
            }                                                                                      \
            for (int64_t i = 0; i < m; i++) {                                                      \
                const double s = scores[i];                                                        \
                if (__builtin_expect(!(s < threshold), 0)) {                                       \
                    kept_index[kept] = (int32_t)(b0 + i);                                          \
                    kept_score[kept] = s;                                                          \
                    kept++;                                                                        \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        return kept;                                                                               \
    }

#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)

// ---------------------------------------------------------------------------------------------
// Dot products

/// Horizontal sum in the same order as the 4-row hadd tree of PK_DEFINE_DOT4, so a row's dot
/// product has the same bits whether it was computed alone or in a group of four (the engine's
/// results must not depend on where a block or a thread's part begins).
static inline float hsum8(__m256 v) {
    const __m256 h1 = _mm256_hadd_ps(v, v);
    const __m256 h2 = _mm256_hadd_ps(h1, h1);
    return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(h2), _mm256_extractf128_ps(h2, 1)));
}

static inline float dot_f32(const float *a, const float *b, int d) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int j = 0;
    for (; j + 16 <= d; j += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(b + j + 8), acc1);
    }
    if (j + 8 <= d) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), acc0);
        j += 8;
    }
    float s = hsum8(_mm256_add_ps(acc0, acc1));
    for (; j < d; j++) s += a[j] * b[j];
    return s;
}

static inline __m256 load_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

static inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

static inline float dot_f16(const float *a, const uint16_t *b, int d) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int j = 0;
    for (; j + 16 <= d; j += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), load_f16(b + j), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 8), load_f16(b + j + 8), acc1);
    }
    if (j + 8 <= d) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), load_f16(b + j), acc0);
        j += 8;
    }
    float s = hsum8(_mm256_add_ps(acc0, acc1));
    for (; j < d; j++) s += a[j] * half_to_float(b[j]);
    return s;
}

static inline __m256 load_i8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

/// <a, q> for int8 q (the caller multiplies by the row's scale).
static inline float dot_i8(const float *a, const int8_t *b, int d) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int j = 0;
    for (; j + 16 <= d; j += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), load_i8(b + j), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 8), load_i8(b + j + 8), acc1);
    }
    if (j + 8 <= d) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), load_i8(b + j), acc0);
        j += 8;
    }
    float s = hsum8(_mm256_add_ps(acc0, acc1));
    for (; j < d; j++) s += a[j] * (float)b[j];
    return s;
}

// Four rows against one user vector per pass (faiss fvec_inner_product_batch_4): each user
// chunk is loaded once for four rows, two accumulators per row hide the FMA latency, and one
// hadd tree reduces the four rows together instead of four separate horizontal sums.
#define PK_DEFINE_DOT4(NAME, ELEM, LOAD8, TOF)                                                      \
    static inline void NAME(const float *u, const ELEM *b0, const ELEM *b1, const ELEM *b2,        \
                            const ELEM *b3, int d, float *out) {                                   \
        __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00;                         \
        __m256 a20 = a00, a21 = a00, a30 = a00, a31 = a00;                                         \
        int j = 0;                                                                                 \
        for (; j + 16 <= d; j += 16) {                                                             \
            const __m256 ua = _mm256_loadu_ps(u + j), ub = _mm256_loadu_ps(u + j + 8);            \
            a00 = _mm256_fmadd_ps(ua, LOAD8(b0 + j), a00);                                         \
            a01 = _mm256_fmadd_ps(ub, LOAD8(b0 + j + 8), a01);                                     \
            a10 = _mm256_fmadd_ps(ua, LOAD8(b1 + j), a10);                                         \
            a11 = _mm256_fmadd_ps(ub, LOAD8(b1 + j + 8), a11);                                     \
            a20 = _mm256_fmadd_ps(ua, LOAD8(b2 + j), a20);                                         \
            a21 = _mm256_fmadd_ps(ub, LOAD8(b2 + j + 8), a21);                                     \
            a30 = _mm256_fmadd_ps(ua, LOAD8(b3 + j), a30);                                         \
            a31 = _mm256_fmadd_ps(ub, LOAD8(b3 + j + 8), a31);                                     \
        }                                                                                          \
        if (j + 8 <= d) {                                                                          \
            const __m256 ua = _mm256_loadu_ps(u + j);                                              \
            a00 = _mm256_fmadd_ps(ua, LOAD8(b0 + j), a00);                                         \
            a10 = _mm256_fmadd_ps(ua, LOAD8(b1 + j), a10);                                         \
            a20 = _mm256_fmadd_ps(ua, LOAD8(b2 + j), a20);                                         \
            a30 = _mm256_fmadd_ps(ua, LOAD8(b3 + j), a30);                                         \
            j += 8;                                                                                \
        }                                                                                          \
        const __m256 h01 = _mm256_hadd_ps(_mm256_add_ps(a00, a01), _mm256_add_ps(a10, a11));      \
        const __m256 h23 = _mm256_hadd_ps(_mm256_add_ps(a20, a21), _mm256_add_ps(a30, a31));      \
        const __m256 h = _mm256_hadd_ps(h01, h23);                                                 \
        _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));    \
        for (; j < d; j++) {                                                                       \
            out[0] += u[j] * TOF(b0[j]);                                                           \
            out[1] += u[j] * TOF(b1[j]);                                                           \
            out[2] += u[j] * TOF(b2[j]);                                                           \
            out[3] += u[j] * TOF(b3[j]);                                                           \
        }                                                                                          \
    }

#define PK_F32_TOF(x) (x)
#define PK_I8_TOF(x) ((float)(x))
PK_DEFINE_DOT4(dot4_f32, float, _mm256_loadu_ps, PK_F32_TOF)
PK_DEFINE_DOT4(dot4_f16, uint16_t, load_f16, half_to_float)
PK_DEFINE_DOT4(dot4_i8, int8_t, load_i8, PK_I8_TOF)

// Integer I8 dots. `vpmaddubsw` multiplies unsigned by signed bytes, so each product u·v is
// formed as |v| · (u·sign(v)): |v| ≤ 128 read as unsigned (|-128| = 0x80 = 128), |u| ≤ 127 so
// u·sign(v) cannot overflow; two adjacent products sum to at most 2·128·127 = 32512 < 2^15, so
// the 16-bit pair sums never saturate; `vpmaddwd` by 1 widens them to 32-bit lanes. The sum is
// exact (|Σ| ≤ d·128·127 < 2^31 for d < 132k), so it equals pk_dot_i8i8_scalar bit for bit.
static inline __m256i mul_i8_sum32(__m256i u, __m256i v) {
    const __m256i p16 = _mm256_maddubs_epi16(_mm256_abs_epi8(v), _mm256_sign_epi8(u, v));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

static inline __m256i mul_i8_sum32_16(const int8_t *u, const int8_t *v) {  // 16 bytes, upper lane 0
    const __m128i a = _mm_loadu_si128((const __m128i *)u), b = _mm_loadu_si128((const __m128i *)v);
    const __m128i p = _mm_madd_epi16(_mm_maddubs_epi16(_mm_abs_epi8(b), _mm_sign_epi8(a, b)), _mm_set1_epi16(1));
    return _mm256_inserti128_si256(_mm256_setzero_si256(), p, 0);
}

/// Σ u_j q_j for four int8 rows against the int8 user vector u; out[r] exact.
static inline void dot4_i8i8(const int8_t *u, const int8_t *b0, const int8_t *b1, const int8_t *b2, const int8_t *b3,
                             int d, int32_t *out) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    int j = 0;
    for (; j + 32 <= d; j += 32) {
        const __m256i uu = _mm256_loadu_si256((const __m256i *)(u + j));
        a0 = _mm256_add_epi32(a0, mul_i8_sum32(uu, _mm256_loadu_si256((const __m256i *)(b0 + j))));
        a1 = _mm256_add_epi32(a1, mul_i8_sum32(uu, _mm256_loadu_si256((const __m256i *)(b1 + j))));
        a2 = _mm256_add_epi32(a2, mul_i8_sum32(uu, _mm256_loadu_si256((const __m256i *)(b2 + j))));
        a3 = _mm256_add_epi32(a3, mul_i8_sum32(uu, _mm256_loadu_si256((const __m256i *)(b3 + j))));
    }
    if (j + 16 <= d) {
        a0 = _mm256_add_epi32(a0, mul_i8_sum32_16(u + j, b0 + j));
        a1 = _mm256_add_epi32(a1, mul_i8_sum32_16(u + j, b1 + j));
        a2 = _mm256_add_epi32(a2, mul_i8_sum32_16(u + j, b2 + j));
        a3 = _mm256_add_epi32(a3, mul_i8_sum32_16(u + j, b3 + j));
        j += 16;
    }
    const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
    _mm_storeu_si128((__m128i *)out, _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)));
    for (; j < d; j++) {
        out[0] += (int32_t)u[j] * b0[j];
        out[1] += (int32_t)u[j] * b1[j];
        out[2] += (int32_t)u[j] * b2[j];
        out[3] += (int32_t)u[j] * b3[j];
    }
}

static inline int32_t dot_i8i8(const int8_t *u, const int8_t *b, int d) {
    __m256i a = _mm256_setzero_si256();
    int j = 0;
    for (; j + 32 <= d; j += 32)
        a = _mm256_add_epi32(a, mul_i8_sum32(_mm256_loadu_si256((const __m256i *)(u + j)), _mm256_loadu_si256((const __m256i *)(b + j))));
    if (j + 16 <= d) { a = _mm256_add_epi32(a, mul_i8_sum32_16(u + j, b + j)); j += 16; }
    const __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    const __m128i s2 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
    int32_t s = _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, _MM_SHUFFLE(2, 3, 0, 1))));
    for (; j < d; j++) s += (int32_t)u[j] * b[j];
    return s;
}

static inline void prefetch_bytes(const char *p, size_t bytes) {
    for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off, 0, 3);
    __builtin_prefetch(p + bytes - 1, 0, 3);
}

/// Prefetch of a whole F32 row into L2 (`prefetcht1`), one request per 128-byte pair of lines
/// (the L2's adjacent-line prefetcher fetches the other line). A plain-C microbenchmark of the
/// bare gather liked it (1.2 vs 1.4 ms for 10k rows); inside the kernel it measured 0.97–1.03×
/// of `prefetcht0` of every line (docs/PERFORMANCE.md), so it is kept only as a measured option.
static inline void prefetch_row_l2(const char *p, size_t bytes) {
    for (size_t off = 0; off < bytes; off += 128) _mm_prefetch(p + off, _MM_HINT_T1);
    _mm_prefetch(p + bytes - 1, _MM_HINT_T1);
}

/// Dots of candidates [b0, b0 + m) of the call into dots[k·PK_BLOCK + i]; rows may be NULL
/// (contiguous from start). `n` bounds the prefetch look-ahead.
static void block_dots_avx2(const pk_kernel *K, const int32_t *rows, int64_t start, int64_t b0, int64_t m,
                       int64_t n, float *dots) {
    const int t = K->t, d = K->d;
    const int64_t row_elems = (int64_t)t * d;
    const float *u = K->user;
    const int64_t pf = K->prefetch;
    switch (K->dtype) {
    case PK_F32: {
        const float *v = (const float *)K->vectors;
        const size_t row_bytes = (size_t)row_elems * 4;
        int64_t i = 0;
        for (; rows && i + 4 <= m; i += 4) {  // F32 is memory-bound: 4 at a time only when gathering
            const int64_t c = b0 + i;
            for (int64_t q = 0; q < 4; q++)
                if (pf && c + q + pf < n) {
                    const char *ahead = (const char *)(v + (int64_t)rows[c + q + pf] * row_elems);
                    if (K->prefetch_mode == 1) prefetch_row_l2(ahead, row_bytes); else prefetch_bytes(ahead, row_bytes);
                }
            const float *p0 = v + (rows ? (int64_t)rows[c] : start + c) * row_elems;
            const float *p1 = v + (rows ? (int64_t)rows[c + 1] : start + c + 1) * row_elems;
            const float *p2 = v + (rows ? (int64_t)rows[c + 2] : start + c + 2) * row_elems;
            const float *p3 = v + (rows ? (int64_t)rows[c + 3] : start + c + 3) * row_elems;
            for (int k = 0; k < t; k++) dot4_f32(u + k * d, p0 + k * d, p1 + k * d, p2 + k * d, p3 + k * d, d, dots + k * PK_BLOCK + i);
        }
        for (; i < m; i++) {  // contiguous scans row by row (sequential for the hardware prefetcher)
            const int64_t c = b0 + i;
            if (pf && c + pf < n) prefetch_bytes((const char *)(v + (rows ? (int64_t)rows[c + pf] : start + c + pf) * row_elems), row_bytes);
            const int64_t r = rows ? rows[c] : start + c;
            const float *base = v + r * row_elems;
            for (int k = 0; k < t; k++) dots[k * PK_BLOCK + i] = dot_f32(u + k * d, base + k * d, d);
        }
        break;
    }
    case PK_F16: {
        const uint16_t *v = (const uint16_t *)K->vectors;
        const size_t row_bytes = (size_t)row_elems * 2;
        int64_t i = 0;
        for (; i + 4 <= m; i += 4) {  // compute-bound dtype: 4 rows at a time, gathered or not
            const int64_t c = b0 + i;
            for (int64_t q = 0; q < 4; q++)
                if (pf && c + q + pf < n) prefetch_bytes((const char *)(v + (rows ? (int64_t)rows[c + q + pf] : start + c + q + pf) * row_elems), row_bytes);
            const uint16_t *p0 = v + (rows ? (int64_t)rows[c] : start + c) * row_elems;
            const uint16_t *p1 = v + (rows ? (int64_t)rows[c + 1] : start + c + 1) * row_elems;
            const uint16_t *p2 = v + (rows ? (int64_t)rows[c + 2] : start + c + 2) * row_elems;
            const uint16_t *p3 = v + (rows ? (int64_t)rows[c + 3] : start + c + 3) * row_elems;
            for (int k = 0; k < t; k++) dot4_f16(u + k * d, p0 + k * d, p1 + k * d, p2 + k * d, p3 + k * d, d, dots + k * PK_BLOCK + i);
        }
        for (; i < m; i++) {
            const int64_t c = b0 + i;
            if (pf && c + pf < n) prefetch_bytes((const char *)(v + (rows ? (int64_t)rows[c + pf] : start + c + pf) * row_elems), row_bytes);
            const int64_t r = rows ? rows[c] : start + c;
            const uint16_t *base = v + r * row_elems;
            for (int k = 0; k < t; k++) dots[k * PK_BLOCK + i] = dot_f16(u + k * d, base + k * d, d);
        }
        break;
    }
    case PK_I8: {
        const int8_t *v = (const int8_t *)K->vectors;
        const float *s = K->scales;
        const size_t row_bytes = (size_t)row_elems;
        // Integer path (user_q set): dot = (Σ q_u q_v) · (s_u,k · s_v,r,k), one exact integer sum
        // and one float product; otherwise int8 widened to F32 against u, times s_v,r,k.
        const int8_t *uq = K->i8_integer ? K->user_q : NULL;
        const float *us = K->user_scale;
        int64_t i = 0;
        for (; i + 4 <= m; i += 4) {  // compute-bound dtype: 4 rows at a time, gathered or not
            const int64_t c = b0 + i;
            for (int64_t q = 0; q < 4; q++)
                if (pf && c + q + pf < n) {
                    const int64_t ra = rows ? (int64_t)rows[c + q + pf] : start + c + q + pf;
                    prefetch_bytes((const char *)(v + ra * row_elems), row_bytes);
                    __builtin_prefetch(s + ra * t, 0, 3);
                }
            const int64_t r0 = rows ? (int64_t)rows[c] : start + c, r1 = rows ? (int64_t)rows[c + 1] : start + c + 1;
            const int64_t r2 = rows ? (int64_t)rows[c + 2] : start + c + 2, r3 = rows ? (int64_t)rows[c + 3] : start + c + 3;
            const int8_t *p0 = v + r0 * row_elems, *p1 = v + r1 * row_elems, *p2 = v + r2 * row_elems, *p3 = v + r3 * row_elems;
            for (int k = 0; k < t; k++) {
                float *o = dots + k * PK_BLOCK + i;
                if (uq) {
                    int32_t q4[4];
                    dot4_i8i8(uq + k * d, p0 + k * d, p1 + k * d, p2 + k * d, p3 + k * d, d, q4);
                    o[0] = (float)q4[0] * (us[k] * s[r0 * t + k]);
                    o[1] = (float)q4[1] * (us[k] * s[r1 * t + k]);
                    o[2] = (float)q4[2] * (us[k] * s[r2 * t + k]);
                    o[3] = (float)q4[3] * (us[k] * s[r3 * t + k]);
                } else {
                    dot4_i8(u + k * d, p0 + k * d, p1 + k * d, p2 + k * d, p3 + k * d, d, o);
                    o[0] *= s[r0 * t + k];
                    o[1] *= s[r1 * t + k];
                    o[2] *= s[r2 * t + k];
                    o[3] *= s[r3 * t + k];
                }
            }
        }
        for (; i < m; i++) {
            const int64_t c = b0 + i;
            if (pf && c + pf < n) {
                const int64_t ra = rows ? (int64_t)rows[c + pf] : start + c + pf;
                prefetch_bytes((const char *)(v + ra * row_elems), row_bytes);
                __builtin_prefetch(s + ra * t, 0, 3);
            }
            const int64_t r = rows ? rows[c] : start + c;
            const int8_t *base = v + r * row_elems;
            for (int k = 0; k < t; k++)
                dots[k * PK_BLOCK + i] = uq ? (float)dot_i8i8(uq + k * d, base + k * d, d) * (us[k] * s[r * t + k])
                                            : dot_i8(u + k * d, base + k * d, d) * s[r * t + k];
        }
        break;
    }
    }
    // Pad lanes up to the next multiple of 8 so the vector chain reads defined values.
    for (int k = 0; k < t; k++)
        for (int64_t i = m; i < ((m + 7) & ~(int64_t)7) && i < PK_BLOCK; i++) dots[k * PK_BLOCK + i] = 0;
}

// ---------------------------------------------------------------------------------------------
// Sigmoid (Cephes-style expf on AVX2, ~1 ulp on [-87, 0]) and the logit chain

static inline __m256 exp8_nonpositive(__m256 x) {
    // x in [-87.3, 0]: 2^n stays a normal float.
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
    const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), x);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/// σ(x) = 1/(1+e^-x) for x ≥ 0, e^x/(1+e^x) otherwise (no overflow); NaN stays NaN.
static inline __m256 sigmoid8(__m256 x) {
    const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    const __m256 e = exp8_nonpositive(_mm256_sub_ps(_mm256_setzero_ps(), a));
    const __m256 den = _mm256_add_ps(_mm256_set1_ps(1.0f), e);
    const __m256 pos = _mm256_div_ps(_mm256_set1_ps(1.0f), den);
    const __m256 neg = _mm256_div_ps(e, den);
    __m256 p = _mm256_blendv_ps(neg, pos, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ));
    return _mm256_blendv_ps(p, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

static void sigmoid_avx2(const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, sigmoid8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float in[8] = {0}, out[8];
        memcpy(in, x + i, (size_t)(n - i) * sizeof(float));
        _mm256_storeu_ps(out, sigmoid8(_mm256_loadu_ps(in)));
        memcpy(y + i, out, (size_t)(n - i) * sizeof(float));
    }
}

/// dots[k·B + i] → probs[k·B + i] for i < m (rounded up to 8).
static void block_chain_avx2(const pk_kernel *K, const float *dots, float *probs, int64_t m) {
    const int t = K->t;
    const __m256 zero = _mm256_setzero_ps();
    for (int64_t i = 0; i < m; i += 8) {
        __m256 prev_logit = zero, prev_p = _mm256_set1_ps(1.0f);
        for (int k = 0; k < t; k++) {
            __m256 r = _mm256_add_ps(_mm256_loadu_ps(dots + k * PK_BLOCK + i), _mm256_set1_ps(K->head_bias[k]));
            if (K->clamp && k > 0) r = _mm256_blendv_ps(r, zero, _mm256_cmp_ps(r, zero, _CMP_GT_OQ));
            __m256 p;
            if (K->chain == PK_ADDITIVE) {
                const __m256 logit = (K->logit_residual && k > 0) ? _mm256_add_ps(prev_logit, r) : r;
                prev_logit = logit;
                p = sigmoid8(logit);
            } else {
                prev_p = _mm256_mul_ps(prev_p, sigmoid8(r));
                p = prev_p;
            }
            _mm256_storeu_ps(probs + k * PK_BLOCK + i, p);
        }
    }
}

PK_DEFINE_ENTRIES(avx2)

static uint64_t stream_read_avx2(const void *base, size_t bytes) {
    const char *p = (const char *)base;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 128 <= bytes; i += 128) {
        a0 = _mm256_add_epi64(a0, _mm256_loadu_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_loadu_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_loadu_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_loadu_si256((const __m256i *)(p + i + 96)));
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, s);
    uint64_t sum = lanes[0] + lanes[1] + lanes[2] + lanes[3];
    for (; i < bytes; i++) sum += (uint8_t)p[i];
    return sum;
}

#pragma clang attribute pop

// ---------------------------------------------------------------------------------------------
// Scalar reference (plain C, libm expf; the formula of LogitChain.apply)

static float sigmoid_scalar(float x) {
    if (x >= 0) return 1.0f / (1.0f + expf(-x));
    const float e = expf(x);
    return e / (1.0f + e);
}

static float half_to_float_scalar(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else {  // subnormal half → normal float
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

void pk_probabilities_scalar(const pk_kernel *K, const int32_t *rows, int64_t start, int64_t n, float *out) {
    const int t = K->t, d = K->d;
    for (int64_t i = 0; i < n; i++) {
        const int64_t r = rows ? rows[i] : start + i;
        float prev_logit = 0, prev_p = 1;
        for (int k = 0; k < t; k++) {
            const int64_t base = (r * t + k) * d;
            float s = 0;
            for (int j = 0; j < d; j++) {
                float v;
                switch (K->dtype) {
                case PK_F32: v = ((const float *)K->vectors)[base + j]; break;
                case PK_F16: v = half_to_float_scalar(((const uint16_t *)K->vectors)[base + j]); break;
                default: v = (float)((const int8_t *)K->vectors)[base + j] * K->scales[r * t + k]; break;
                }
                s += K->user[k * d + j] * v;
            }
            float rr = s + K->head_bias[k];
            if (K->clamp && k > 0 && rr > 0) rr = 0;
            if (K->chain == PK_ADDITIVE) {
                const float logit = (K->logit_residual && k > 0) ? prev_logit + rr : rr;
                prev_logit = logit;
                out[i * t + k] = sigmoid_scalar(logit);
            } else {
                prev_p = prev_p * sigmoid_scalar(rr);
                out[i * t + k] = prev_p;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// User quantisation, integer reference, id lookup (plain C)

void pk_quantize_user(const float *user, int32_t t, int32_t d, int8_t *q, float *scale) {
    for (int k = 0; k < t; k++) {
        const float *u = user + (size_t)k * d;
        float m = 0;
        for (int j = 0; j < d; j++) m = fmaxf(m, fabsf(u[j]));
        if (!(m > 0) || !isfinite(m)) {  // all zero (or not finite: the F32 path would give NaN too)
            scale[k] = isfinite(m) ? 0 : NAN;
            memset(q + (size_t)k * d, 0, (size_t)d);
            continue;
        }
        const float s = m / 127.0f;
        scale[k] = s;
        for (int j = 0; j < d; j++) {
            float x = nearbyintf(u[j] / s);
            x = x > 127 ? 127 : x < -127 ? -127 : x;
            q[(size_t)k * d + j] = (int8_t)x;
        }
    }
}

int32_t pk_dot_i8i8_scalar(const int8_t *a, const int8_t *b, int32_t d) {
    int32_t s = 0;
    for (int j = 0; j < d; j++) s += (int32_t)a[j] * (int32_t)b[j];
    return s;
}

static inline uint64_t pk_id_hash(int64_t id) {  // IDTable.hash
    const uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 29);
}

void pk_lookup_rows(const pk_id_slot *slots, uint64_t mask, const int64_t *ids, int64_t n, int32_t *rows) {
    enum { AHEAD = 16 };
    for (int64_t i = 0; i < n; i++) {
        if (i + AHEAD < n) __builtin_prefetch(&slots[pk_id_hash(ids[i + AHEAD]) & mask], 0, 3);
        const int64_t id = ids[i];
        uint64_t at = pk_id_hash(id) & mask;
        for (;;) {
            const pk_id_slot *e = &slots[at];
            if (e->row1 == 0) { rows[i] = -1; break; }
            if (e->key == id) { rows[i] = e->row1 - 1; break; }
            at = (at + 1) & mask;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Portable path: plain C for any x86-64 (or other) CPU, chosen when the CPU lacks AVX2/FMA/F16C
// or PRERANK_KERNEL=scalar. Same block structure and results within the documented error
// models: F32/F16/I8-as-float dots are summed in another order (8 running partial sums, no FMA,
// so within a few ulp of the AVX2 sums); F16 is widened exactly; the I8 integer path is the same
// exact integer sum (pk_dot_i8i8_scalar) times the same float product, bit for bit; the sigmoid
// is libm expf (the reference's own), which the AVX2 sigmoid is held to within ~1 ulp.

static inline void prefetch_bytes_portable(const char *p, size_t bytes) {
    for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off, 0, 3);
    __builtin_prefetch(p + bytes - 1, 0, 3);
}

/// <a, b> with 8 independent partial sums (the compiler keeps them in SSE2 registers).
static inline float dot_f32_portable(const float *a, const float *b, int d) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int j = 0;
    for (; j + 8 <= d; j += 8)
        for (int l = 0; l < 8; l++) acc[l] += a[j + l] * b[j + l];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; j < d; j++) s += a[j] * b[j];
    return s;
}

static inline float dot_f16_portable(const float *a, const uint16_t *b, int d) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int j = 0;
    for (; j + 8 <= d; j += 8)
        for (int l = 0; l < 8; l++) acc[l] += a[j + l] * half_to_float_scalar(b[j + l]);
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; j < d; j++) s += a[j] * half_to_float_scalar(b[j]);
    return s;
}

static inline float dot_i8_portable(const float *a, const int8_t *b, int d) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int j = 0;
    for (; j + 8 <= d; j += 8)
        for (int l = 0; l < 8; l++) acc[l] += a[j + l] * (float)b[j + l];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; j < d; j++) s += a[j] * (float)b[j];
    return s;
}

static void block_dots_portable(const pk_kernel *K, const int32_t *rows, int64_t start, int64_t b0, int64_t m,
                                int64_t n, float *dots) {
    const int t = K->t, d = K->d;
    const int64_t row_elems = (int64_t)t * d;
    const float *u = K->user;
    const int64_t pf = K->prefetch;
    const size_t elem = K->dtype == PK_F32 ? 4 : K->dtype == PK_F16 ? 2 : 1;
    const size_t row_bytes = (size_t)row_elems * elem;
    const char *vbase = (const char *)K->vectors;
    const float *s = K->scales;
    for (int64_t i = 0; i < m; i++) {
        const int64_t c = b0 + i;
        if (pf && c + pf < n) {
            const int64_t ra = rows ? (int64_t)rows[c + pf] : start + c + pf;
            prefetch_bytes_portable(vbase + (size_t)ra * row_bytes, row_bytes);
            if (K->dtype == PK_I8) __builtin_prefetch(s + ra * t, 0, 3);
        }
        const int64_t r = rows ? (int64_t)rows[c] : start + c;
        for (int k = 0; k < t; k++) {
            float dot;
            switch (K->dtype) {
            case PK_F32: dot = dot_f32_portable(u + k * d, (const float *)K->vectors + r * row_elems + k * d, d); break;
            case PK_F16: dot = dot_f16_portable(u + k * d, (const uint16_t *)K->vectors + r * row_elems + k * d, d); break;
            default: {
                const int8_t *q = (const int8_t *)K->vectors + r * row_elems + k * d;
                if (K->i8_integer)  // the exact integer sum of the AVX2 path, then the same product
                    dot = (float)pk_dot_i8i8_scalar(K->user_q + k * d, q, d) * (K->user_scale[k] * s[r * t + k]);
                else
                    dot = dot_i8_portable(u + k * d, q, d) * s[r * t + k];
                break;
            }
            }
            dots[k * PK_BLOCK + i] = dot;
        }
    }
}

/// The logit chain of LogitChain.apply with libm's sigmoid, candidate by candidate.
static void block_chain_portable(const pk_kernel *K, const float *dots, float *probs, int64_t m) {
    const int t = K->t;
    for (int64_t i = 0; i < m; i++) {
        float prev_logit = 0, prev_p = 1;
        for (int k = 0; k < t; k++) {
            float r = dots[k * PK_BLOCK + i] + K->head_bias[k];
            if (K->clamp && k > 0 && r > 0) r = 0;
            float p;
            if (K->chain == PK_ADDITIVE) {
                const float logit = (K->logit_residual && k > 0) ? prev_logit + r : r;
                prev_logit = logit;
                p = sigmoid_scalar(logit);
            } else {
                prev_p = prev_p * sigmoid_scalar(r);
                p = prev_p;
            }
            probs[k * PK_BLOCK + i] = p;
        }
    }
}

PK_DEFINE_ENTRIES(portable)

static void sigmoid_portable(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] != x[i] ? x[i] : sigmoid_scalar(x[i]);
}

/// The same checksum as the AVX2 loop (64-bit words summed mod 2^64, then the tail bytes).
static uint64_t stream_read_portable(const void *base, size_t bytes) {
    const char *p = (const char *)base;
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    size_t i = 0;
    for (; i + 128 <= bytes; i += 128)
        for (size_t w = 0; w < 128; w += 32) {
            uint64_t x[4];
            memcpy(x, p + i + w, sizeof x);
            a0 += x[0]; a1 += x[1]; a2 += x[2]; a3 += x[3];
        }
    uint64_t sum = a0 + a1 + a2 + a3;
    for (; i < bytes; i++) sum += (uint8_t)p[i];
    return sum;
}

// ---------------------------------------------------------------------------------------------
// Run-time dispatch

typedef struct {
    const char *name;
    void (*probabilities)(const pk_kernel *, const int32_t *, int64_t, int64_t, float *, float *);
    void (*dots)(const pk_kernel *, const int32_t *, int64_t, int64_t, float *, float *);
    int64_t (*score_filter)(const pk_kernel *, const pk_fusion *, const int32_t *, int64_t, int64_t, const float *,
                            double, float *, int32_t *, double *);
    void (*sigmoid)(const float *, float *, int64_t);
    uint64_t (*stream_read)(const void *, size_t);
} pk_impl;

static const pk_impl impl_avx2 = {"avx2", probabilities_avx2, dots_avx2, score_filter_avx2, sigmoid_avx2, stream_read_avx2};
static const pk_impl impl_portable = {"scalar", probabilities_portable, dots_portable, score_filter_portable,
                                      sigmoid_portable, stream_read_portable};

static _Atomic(const pk_impl *) chosen_impl;

int32_t pk_cpu_has_avx2(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();  // may run before the constructor that fills the CPU model
    // libgcc/compiler-rt also check that the OS saves the YMM state (XGETBV) for "avx2".
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
    return 0;
#endif
}

/// PRERANK_KERNEL=scalar forces the portable path; unset, empty or "auto" picks AVX2 when the CPU
/// has AVX2, FMA and F16C. Any other value is refused by the CLI before the first call
/// (BuildInfo.kernelEnvironmentProblem); here it means auto, so a kernel can never SIGILL.
static const pk_impl *resolve_impl(void) {
    const char *env = getenv("PRERANK_KERNEL");
    if (env && strcmp(env, "scalar") == 0) return &impl_portable;
    return pk_cpu_has_avx2() ? &impl_avx2 : &impl_portable;
}

static inline const pk_impl *impl(void) {
    const pk_impl *p = atomic_load_explicit(&chosen_impl, memory_order_acquire);
    if (__builtin_expect(p == NULL, 0)) {  // first use: racing threads resolve the same answer
        p = resolve_impl();
        atomic_store_explicit(&chosen_impl, p, memory_order_release);
    }
    return p;
}

const char *pk_kernel_isa(void) { return impl()->name; }

void pk_probabilities_portable(const pk_kernel *K, const int32_t *rows, int64_t start, int64_t n, float *scratch,
                               float *out) {
    probabilities_portable(K, rows, start, n, scratch, out);
}

void pk_dots_portable(const pk_kernel *K, const int32_t *rows, int64_t start, int64_t n, float *scratch, float *out) {
    dots_portable(K, rows, start, n, scratch, out);
}

int64_t pk_score_filter_portable(const pk_kernel *K, const pk_fusion *F, const int32_t *rows, int64_t start, int64_t n,
                                 const float *relevance, double threshold, float *scratch, int32_t *kept_index,
                                 double *kept_score) {
    return score_filter_portable(K, F, rows, start, n, relevance, threshold, scratch, kept_index, kept_score);
}

void pk_probabilities(const pk_kernel *K, const int32_t *rows, int64_t start, int64_t n, float *scratch, float *out) {
    impl()->probabilities(K, rows, start, n, scratch, out);
}

void pk_dots(const pk_kernel *K, const int32_t *rows, int64_t start, int64_t n, float *scratch, float *out) {
    impl()->dots(K, rows, start, n, scratch, out);
}

int64_t pk_score_filter(const pk_kernel *K, const pk_fusion *F, const int32_t *rows, int64_t start, int64_t n,
                        const float *relevance, double threshold, float *scratch, int32_t *kept_index,
                        double *kept_score) {
    return impl()->score_filter(K, F, rows, start, n, relevance, threshold, scratch, kept_index, kept_score);
}

void pk_sigmoid(const float *x, float *y, int64_t n) { impl()->sigmoid(x, y, n); }

uint64_t pk_stream_read(const void *base, size_t bytes) { return impl()->stream_read(base, bytes); }

const char *pk_build_commit(void) {
#ifdef PK_GIT_COMMIT
    return PK_GIT_COMMIT;
#else
    return "unknown";
#endif
}
