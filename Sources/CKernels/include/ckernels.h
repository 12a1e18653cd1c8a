// CKernels: the fused pre-rank scoring loop (gather + T dot products + logit chain + sigmoid +
// fusion + top-K pre-filter), written once in C so that the inner loop can prefetch rows ahead
// (`__builtin_prefetch`, which Swift lacks) and use AVX2/FMA/F16C intrinsics directly.
//
// Layout (see Sources/TwinTower/Index/ScoringKernel.swift):
//   user      [T × d]  F32, task k at k·d
//   vectors   [N × T × d] of dtype (F32 | F16 | I8); row r, task k at (r·T + k)·d
//   scales    [N × T] F32 (I8 only)
//   rows      [n] int32 row numbers, or NULL for the contiguous rows start ..< start + n
// Every SIMD path has a scalar reference beside it (pk_*_scalar), used by the tests, and a portable
// implementation chosen at run time when the CPU lacks AVX2/FMA/F16C (pk_kernel_isa).
#ifndef CKERNELS_H
#define CKERNELS_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { PK_F32 = 0, PK_F16 = 1, PK_I8 = 2 };
enum { PK_ADDITIVE = 0, PK_MULTIPLICATIVE = 1 };

/// Candidates are processed this many at a time inside one call (scratch is sized for it).
#define PK_BLOCK 256

typedef struct {
    const void *vectors;
    const float *scales;       // I8 only, else NULL
    const float *user;         // [T × d]
    const float *head_bias;    // [T]
    int32_t dtype;             // PK_F32 | PK_F16 | PK_I8
    int32_t t;
    int32_t d;
    int32_t chain;             // PK_ADDITIVE | PK_MULTIPLICATIVE (logit chain)
    int32_t logit_residual;    // additive chain: logit_k += logit_{k-1}
    int32_t clamp;             // r_k = min(r_k, 0) for k > 0
    int32_t prefetch;          // rows ahead to prefetch when gathering (0 = none)
    int32_t i8_integer;        // I8 only: integer dot products against user_q (else widen to F32)
    int32_t prefetch_mode;     // F32 gather: 0 = every 64 B line to L1 (default); 1 = whole row to
                               // L2, one request per 128 B (measured no faster; a bench variant)
    const int8_t *user_q;      // [T × d] the user vector quantised per task (pk_quantize_user)
    const float *user_scale;   // [T]     its scales: u_k ≈ user_scale[k] · user_q[k·d ..]
} pk_kernel;

typedef struct {
    int32_t formula;           // PK_ADDITIVE: α·ctr + β·ctcvr + γ·rel;  PK_MULTIPLICATIVE: ctr^α · ctcvr^β
    int32_t reserved;
    double alpha, beta, gamma;
} pk_fusion;

/// Scratch floats a caller must pass to pk_probabilities / pk_score_filter.
static inline size_t pk_scratch_floats(int32_t t) { return (size_t)(2 * t + 2) * PK_BLOCK; }

/// Per-task probabilities, candidate-major: out[i·T + k].
void pk_probabilities(const pk_kernel *kernel, const int32_t *rows, int64_t start, int64_t n,
                      float *scratch, float *out);

/// The raw dot products <u_k, v_k> (before head bias and chain), candidate-major: out[i·T + k].
/// What the chain is fed; tests hold each arithmetic path to its reference with it.
void pk_dots(const pk_kernel *kernel, const int32_t *rows, int64_t start, int64_t n, float *scratch, float *out);

/// Fused scores of n candidates (fusion.formula), keeping those that are not below `threshold`
/// (`!(score < threshold)`: ties and NaN are kept; the caller's top-K decides). Writes the kept
/// candidates' positions (0 ..< n) and scores; returns how many were kept. `relevance` may be
/// NULL (0 for every candidate).
int64_t pk_score_filter(const pk_kernel *kernel, const pk_fusion *fusion, const int32_t *rows,
                        int64_t start, int64_t n, const float *relevance, double threshold,
                        float *scratch, int32_t *kept_index, double *kept_score);

/// Quantises the user vector per task for the I8 integer path: `scale_k = max_j |u_kj| / 127`,
/// `q_kj = round(u_kj / scale_k)` in [-127, 127] (0 and scale 0 for an all-zero task).
///
/// Error model of the integer dot product (beside the exact F32 dot of the dequantised item row
/// v = s_v · q_v):  |Σ u_j v_j − s_u s_v Σ q_uj q_vj| ≤ (s_u / 2) · Σ_j |v_j|, since each user
/// component moves by at most half a step. The item's own quantisation error is the index's.
void pk_quantize_user(const float *user, int32_t t, int32_t d, int8_t *q, float *scale);

/// Integer dot product Σ a_j b_j of two int8 vectors (scalar reference of the AVX2 path).
int32_t pk_dot_i8i8_scalar(const int8_t *a, const int8_t *b, int32_t d);

/// One slot of the id table (Sources/TwinTower/Index/IDTable.swift): `row1` is row + 1, 0 = empty.
typedef struct {
    int64_t key;
    int32_t row1;
    int32_t pad;
} pk_id_slot;

/// Rows of n ids in an open-addressing table of `mask + 1` slots (linear probing, the hash of
/// IDTable.hash); -1 for an id the table does not hold. The slot of the id 16 places ahead is
/// prefetched, so about 16 table misses are in flight instead of the few the core finds itself.
void pk_lookup_rows(const pk_id_slot *slots, uint64_t mask, const int64_t *ids, int64_t n, int32_t *rows);

/// Plain scalar references (no SIMD, libm expf), for tests and the benchmark's naive baseline.
void pk_probabilities_scalar(const pk_kernel *kernel, const int32_t *rows, int64_t start, int64_t n,
                             float *out);

/// The vectorised sigmoid used by the SIMD path, n values (tests: accuracy vs libm).
void pk_sigmoid(const float *x, float *y, int64_t n);

/// Sums `bytes` bytes as 64-bit words with 4 independent AVX2 accumulators: the streaming-read
/// baseline of the benchmark. Returns a checksum so the read is kept.
uint64_t pk_stream_read(const void *base, size_t bytes);

/// The kernel implementation in use: "avx2" (AVX2/FMA/F16C) or "scalar" (portable C). Chosen at
/// the first kernel call: "scalar" when PRERANK_KERNEL=scalar or the CPU lacks any of the three
/// (so an older CPU runs the portable path instead of dying with SIGILL), else "avx2".
const char *pk_kernel_isa(void);

/// Whether this CPU (and OS) can run the AVX2 path.
int32_t pk_cpu_has_avx2(void);

/// The portable implementations themselves, whatever pk_kernel_isa says, so tests can hold them
/// to the references (and to the AVX2 path) in the same process.
void pk_probabilities_portable(const pk_kernel *kernel, const int32_t *rows, int64_t start, int64_t n,
                               float *scratch, float *out);
void pk_dots_portable(const pk_kernel *kernel, const int32_t *rows, int64_t start, int64_t n, float *scratch, float *out);
int64_t pk_score_filter_portable(const pk_kernel *kernel, const pk_fusion *fusion, const int32_t *rows,
                                 int64_t start, int64_t n, const float *relevance, double threshold,
                                 float *scratch, int32_t *kept_index, double *kept_score);

/// The git commit the binary was built from (PRERANK_GIT_COMMIT at build time), or "unknown".
const char *pk_build_commit(void);

#ifdef __cplusplus
}
#endif
#endif
