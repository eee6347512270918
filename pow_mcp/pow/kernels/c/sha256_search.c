/*
 * Proof-of-work search engines: SHA-256(prefix + decimal nonce) over ranges of nonces.
 *
 * How (see sha256_search.h for the contract):
 * - The state after the prefix's full 64-byte blocks (the midstate) is computed once per call;
 *   per nonce only the 1 or 2 tail blocks (rest of the prefix, digits, padding, length) are.
 * - A range is cut into segments of one digit count, so a segment's message length, padding
 *   and block layout are fixed. Each engine hashes `lanes` consecutive nonces at once; lane l
 *   keeps its own tail with nonce base + l in ASCII and adds `lanes` to it in place.
 * - The last few digits (the window: at least an engine's window_min, from a word boundary)
 *   change from group to group; the digits before them once every 10**window nonces. For that
 *   long a "plan" holds what does not depend on the window: the message schedule's constant
 *   words and terms, and the state after the rounds whose message words hold only fixed
 *   bytes. Engines start their rounds there and take the window's words from the driver.
 * - When the digits cross into a second tail block, the first block (holding the high
 *   digits) is compressed once per lane and kept until a carry reaches it; a second block of
 *   padding only has its schedule computed once per segment.
 * - Leading zeros are checked on the first state word against a threshold inside each engine;
 *   only a candidate for a new best is looked at closely.
 *
 * Engines: "sha-ni" (x86 SHA extensions, 4 nonces interleaved), "avx2" (8 lanes in 256-bit
 * vectors), "sha-ni+sse" (SHA-NI and 128-bit vector lanes in one instruction stream, chosen
 * only where it measures faster than sha-ni), "armv8-sha2" (ARMv8 cryptography extensions, 4
 * nonces interleaved), "scalar-c" (portable). The ISA-specific ones are compiled with target
 * attributes and picked at run time, so a build runs on any CPU of its architecture. The
 * vector-lane code is in sha256_lanes.h, included once per vector width.
 */

#include "sha256_search.h"

#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Compilers                                                                                  */

#if defined(__GNUC__) || defined(__clang__)
#define POW_GNUC 1
#define ALWAYS_INLINE inline __attribute__((always_inline))
#define NOINLINE __attribute__((noinline))
#if defined(__clang__)
#define UNROLL _Pragma("unroll")
#else
#define UNROLL _Pragma("GCC unroll 64")
#endif
#define BSWAP64(x) __builtin_bswap64(x)
#define CLZ64(x) __builtin_clzll(x)
#elif defined(_MSC_VER)
#include <intrin.h>
#include <stdlib.h>
#define POW_GNUC 0
#define ALWAYS_INLINE __forceinline
#define NOINLINE __declspec(noinline)
#define UNROLL
#define BSWAP64(x) _byteswap_uint64(x)
static __forceinline int CLZ64(uint64_t x)
{
    unsigned long i;
    _BitScanReverse64(&i, x);
    return 63 - (int)i;
}
#else
#define POW_GNUC 0
#define ALWAYS_INLINE inline
#define NOINLINE
#define UNROLL
static uint64_t BSWAP64(uint64_t x)
{
    uint64_t r = 0;
    for (int i = 0; i < 8; i++, x >>= 8)
        r = (r << 8) | (x & 0xFF);
    return r;
}
static int CLZ64(uint64_t x)
{
    int n = 0;
    while (!(x >> 63)) {
        x <<= 1;
        n++;
    }
    return n;
}
#endif
#define ALIGNAS(n) _Alignas(n)

/* -DPOW_PORTABLE_ONLY builds what a machine without the ISA engines gets (to test that path). */
#if !defined(POW_PORTABLE_ONLY) && (defined(__x86_64__) || defined(_M_X64) || defined(__i386__))
#define POW_X86 1
#if POW_GNUC
#include <cpuid.h>
#include <immintrin.h>
#define TARGET_SHANI __attribute__((target("sha,sse4.1,ssse3")))
#define TARGET_AVX2 __attribute__((target("avx2")))
#else
#include <immintrin.h>
#define TARGET_SHANI
#define TARGET_AVX2
#endif
#else
#define POW_X86 0
#endif

#if !defined(POW_PORTABLE_ONLY) && (defined(__aarch64__) || defined(_M_ARM64))
#define POW_ARM64 1
#if defined(__clang__) && !defined(__APPLE__) && __clang_major__ < 16 && !defined(__ARM_FEATURE_SHA2)
/* clang before 16 declares the SHA-2 intrinsics only in files built for them as a whole;
   only the functions marked TARGET_ARMSHA below use them. */
#define __ARM_FEATURE_SHA2 1
#endif
#include <arm_neon.h>
#if defined(__clang__) && !defined(__APPLE__)
#define TARGET_ARMSHA __attribute__((target("sha2")))
#elif defined(__GNUC__) && !defined(__clang__)
#define TARGET_ARMSHA __attribute__((target("+crypto")))
#else /* Apple clang enables the extensions for every arm64 target; MSVC needs no attribute */
#define TARGET_ARMSHA
#endif
#if defined(__linux__) || defined(__ANDROID__)
#include <sys/auxv.h>
#ifndef HWCAP_SHA2
#define HWCAP_SHA2 (1 << 6)
#endif
#elif defined(__FreeBSD__)
#include <sys/auxv.h>
#include <machine/elf.h>
#elif defined(_WIN32)
#include <windows.h>
#endif
#else
#define POW_ARM64 0
#endif

/* ------------------------------------------------------------------------------------------ */
/* SHA-256 constants and portable code                                                        */

static const uint32_t IV[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static ALIGNAS(16) const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static ALWAYS_INLINE uint32_t load_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static ALWAYS_INLINE uint32_t rotr32(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

#define BSIG0(x) (rotr32((x), 2) ^ rotr32((x), 13) ^ rotr32((x), 22))
#define BSIG1(x) (rotr32((x), 6) ^ rotr32((x), 11) ^ rotr32((x), 25))
#define SSIG0(x) (rotr32((x), 7) ^ rotr32((x), 18) ^ ((x) >> 3))
#define SSIG1(x) (rotr32((x), 17) ^ rotr32((x), 19) ^ ((x) >> 10))
#define CH(e, f, g) ((g) ^ ((e) & ((f) ^ (g))))
#define MAJ(a, b, c) ((b) ^ (((a) ^ (b)) & ((b) ^ (c))))

/* One round on the state v[0..7] = a..h, with wk = W[t] + K[t]. */
static ALWAYS_INLINE void scalar_round(uint32_t v[8], uint32_t wk)
{
    const uint32_t a = v[0], b = v[1], c = v[2], e = v[4], f = v[5], g = v[6];
    const uint32_t t1 = v[7] + BSIG1(e) + CH(e, f, g) + wk;
    /* Maj as b ^ ((a ^ b) & (b ^ c)): b ^ c is the last round's a ^ b (reused when unrolled) */
    const uint32_t t2 = BSIG0(a) + MAJ(a, b, c);
    v[7] = g;
    v[6] = f;
    v[5] = e;
    v[4] = v[3] + t1;
    v[3] = c;
    v[2] = b;
    v[1] = a;
    v[0] = t1 + t2;
}

/* Round t of rounds that start at a run-time round t0 < 16: the state lives in a ring r[8]
   where word i of round t sits at r[(i - t) & 7], so that a round writes only a and e. Fully
   unrolled with `if (t >= t0)`, the ring stays in registers; after round 15, r[i] is word i. */
#define RING_ROUND(r, t, wk)                                                                    \
    do {                                                                                        \
        const uint32_t a_ = r[(0 - (t)) & 7], b_ = r[(1 - (t)) & 7], c_ = r[(2 - (t)) & 7];     \
        const uint32_t e_ = r[(4 - (t)) & 7], f_ = r[(5 - (t)) & 7], g_ = r[(6 - (t)) & 7];     \
        const uint32_t t1_ = r[(7 - (t)) & 7] + BSIG1(e_) + CH(e_, f_, g_) + (wk);              \
        r[(3 - (t)) & 7] += t1_;                                                                \
        r[(7 - (t)) & 7] = t1_ + BSIG0(a_) + MAJ(a_, b_, c_);                                   \
    } while (0)

/* W[t] + K[t] for the 64 rounds of a block. */
static void schedule_wk(uint32_t wk[64], const uint8_t *block)
{
    uint32_t w[64];
    for (int t = 0; t < 16; t++)
        w[t] = load_be32(block + 4 * t);
    for (int t = 16; t < 64; t++)
        w[t] = SSIG1(w[t - 2]) + w[t - 7] + SSIG0(w[t - 15]) + w[t - 16];
    for (int t = 0; t < 64; t++)
        wk[t] = w[t] + K256[t];
}

/* One SHA-256 compression of a 64-byte block into h[8] (standard word order). */
static void compress_block(uint32_t h[8], const uint8_t *block)
{
    uint32_t w[16], v[8];
    memcpy(v, h, sizeof v);
    UNROLL
    for (int t = 0; t < 64; t++) {
        uint32_t wt;
        if (t < 16) {
            wt = w[t] = load_be32(block + 4 * t);
        } else {
            wt = SSIG1(w[(t - 2) & 15]) + w[(t - 7) & 15] + SSIG0(w[(t - 15) & 15]) + w[t & 15];
            w[t & 15] = wt;
        }
        scalar_round(v, wt + K256[t]);
    }
    for (int i = 0; i < 8; i++)
        h[i] += v[i];
}

/* ------------------------------------------------------------------------------------------ */
/* Plans: what stays the same while only the window's digits change                           */

/* A SHA-256 state in an engine's own word order (see `perm` in run_search). */
typedef struct {
    ALIGNAS(32) uint32_t w[8];
} state_t;

/* For every window of one or two words: W[t] varies for every t >= PLAN_VAR_FROM, and all
   four terms of W[t] do for t >= PLAN_TERMS_FROM (tests/test_native_kernel.py checks it for
   every window; plan_pattern refuses any other). Engines test per word only below these. */
#define PLAN_VAR_FROM 26
#define PLAN_TERMS_FROM 42

typedef struct {
    /* Pattern: which words vary, fixed for a segment (words j0..j1 hold the window). */
    int usable; /* the pattern keeps the promises above */
    int j0, j1;
    uint64_t var;        /* bit t: W[t] depends on words j0..j1 */
    unsigned var_groups; /* bit g: one of W[4g..4g+3] does (SHA-NI and ARMv8 work in fours) */
    uint8_t terms[64];   /* t >= 16 in var: bit 0 W[t-16], 1 W[t-15], 2 W[t-7], 3 W[t-2] vary */
    uint8_t fixed[48];   /* the t >= 16 not in var, n_fixed of them */
    int n_fixed;
    ALIGNAS(16) uint8_t place[4][16]; /* pshufb masks: lane words j0, j1 into groups 0..3 */
    /* Schedule: valid for blocks whose words other than j0..j1 are the plan's. */
    ALIGNAS(32) uint32_t w[64];  /* W[t] for t not in var, else 0 */
    ALIGNAS(32) uint32_t wk[64]; /* t not in var: W[t] + K[t]; t >= 16 in var (full plans
                                    only): the sum of its terms that do not vary */
    ALIGNAS(16) uint32_t p1[16][4]; /* sha256msg1 of groups g-4 and g-3 when neither varies */
    /* Rounds: from one input state shared by every lane. */
    int skip;        /* rounds 0..skip-1 are done */
    state_t state;   /* the state after them, engine word order */
    uint32_t t1, t2; /* round `skip` (standard order): T1 with K but without W, and T2 */
    uint32_t before[16][8]; /* standard-order state before round t, t <= skip: a carry that
                               changes word c redoes rounds c..skip-1 only */
} plan_t;

/* Which words vary when words j0..j1 do. */
static void plan_pattern(plan_t *p, int j0, int j1)
{
    uint64_t var = 0;
    for (int t = j0; t <= j1; t++)
        var |= (uint64_t)1 << t;
    p->n_fixed = 0;
    for (int t = 16; t < 64; t++) {
        const unsigned terms = (unsigned)((var >> (t - 16)) & 1) |
                               (unsigned)((var >> (t - 15)) & 1) << 1 |
                               (unsigned)((var >> (t - 7)) & 1) << 2 |
                               (unsigned)((var >> (t - 2)) & 1) << 3;
        p->terms[t] = (uint8_t)terms;
        if (terms)
            var |= (uint64_t)1 << t;
        else
            p->fixed[p->n_fixed++] = (uint8_t)t;
    }
    p->var = var;
    p->var_groups = 0;
    for (int g = 0; g < 16; g++)
        if ((var >> (4 * g)) & 0xF)
            p->var_groups |= 1u << g;
    p->usable = (var >> PLAN_VAR_FROM) == ((uint64_t)1 << (64 - PLAN_VAR_FROM)) - 1;
    for (int t = PLAN_TERMS_FROM; t < 64; t++)
        p->usable &= p->terms[t] == 15;
    /* A group register holds its words as little-endian dwords; lane words come as dwords
       0 (word j0) and 1 (word j1). */
    for (int g = 0; g < 4; g++)
        for (int b = 0; b < 16; b++) {
            const int t = 4 * g + b / 4;
            p->place[g][b] = (uint8_t)(t == j0 ? b % 4 : t == j1 ? 4 + b % 4 : 0x80);
        }
    p->j0 = j0;
    p->j1 = j1;
    memset(p->w, 0, sizeof p->w);
}

/* What an engine takes from a plan besides the schedule's constant words: */
#define PLAN_P1 1   /* the sha256msg1 sums (engines that work in groups of four words) */
#define PLAN_SUMS 2 /* the constant terms of the words that vary (per-word engines) */

/* The schedule's values from `block` (lane 0), with what `needs` asks for. */
static void plan_schedule(plan_t *p, const uint8_t *block, int needs)
{
    const uint64_t var = p->var;
    for (int t = 0; t < 16; t++) {
        p->w[t] = (var >> t) & 1 ? 0 : load_be32(block + 4 * t);
        p->wk[t] = p->w[t] + K256[t];
    }
    for (int i = 0; i < p->n_fixed; i++) {
        const int t = p->fixed[i];
        p->w[t] = SSIG1(p->w[t - 2]) + p->w[t - 7] + SSIG0(p->w[t - 15]) + p->w[t - 16];
        p->wk[t] = p->w[t] + K256[t];
    }
    if (needs & PLAN_P1)
        for (int g = 4; g < 16; g++)
            if (!((p->var_groups >> (g - 4)) & 3))
                for (int k = 0; k < 4; k++) {
                    const int i = 4 * (g - 4) + k;
                    p->p1[g][k] = p->w[i] + SSIG0(p->w[i + 1]);
                }
    if (!(needs & PLAN_SUMS))
        return;
    for (int t = 16; t < 64; t++) {
        if (!((var >> t) & 1))
            continue;
        const unsigned terms = p->terms[t];
        uint32_t c = 0;
        if (!(terms & 1))
            c += p->w[t - 16];
        if (!(terms & 2))
            c += SSIG0(p->w[t - 15]);
        if (!(terms & 4))
            c += p->w[t - 7];
        if (!(terms & 8))
            c += SSIG1(p->w[t - 2]);
        p->wk[t] = c;
    }
}

/* The rounds part: rounds from..skip-1 again (`in`, if not NULL, is a new input state). */
static void plan_rounds(plan_t *p, const state_t *in, int from, int skip, const int *perm)
{
    if (in) {
        for (int i = 0; i < 8; i++)
            p->before[0][i] = in->w[perm ? perm[i] : i];
        from = 0;
    }
    uint32_t v[8];
    memcpy(v, p->before[from], sizeof v);
    for (int t = from; t < skip; t++) {
        scalar_round(v, p->wk[t]);
        memcpy(p->before[t + 1], v, sizeof v);
    }
    for (int i = 0; i < 8; i++)
        p->state.w[perm ? perm[i] : i] = v[i];
    p->t1 = v[7] + BSIG1(v[4]) + CH(v[4], v[5], v[6]) + K256[skip];
    p->t2 = BSIG0(v[0]) + MAJ(v[0], v[1], v[2]);
    p->skip = skip;
}

/* ------------------------------------------------------------------------------------------ */
/* The search driver, shared by every engine                                                  */

#define MAX_LANES 32 /* the hybrid engine's SHA-NI groups and SSE lanes, at most */
#define MAX_DIGITS 20 /* 18446744073709551615 */

/* One lane of a group: its block, and with a plan its words j0 and j1 of that block (which
   an engine takes from here rather than from the block, where they were just written byte by
   byte: a load spanning those stores would wait for them to reach the cache). Engines take
   an array of them, so that a hybrid engine hands each of its parts a slice. */
typedef struct {
    const uint8_t *block;
    uint32_t w[2];
} lane_t;

/* compress(out, in, shared, lanes, plan, from_state, threshold): out[l] = in[shared ? 0 : l]
   compressed with lanes[l].block, for every lane l (feed-forward included); returns the
   lanes whose first digest word is below threshold, as bits. plan, if not NULL, holds the
   schedule of blocks that differ from each other only in words plan->j0..j1; from_state
   (only with shared): start at round plan->skip from plan->state, made from in[0]. */
typedef unsigned (*compress_fn)(state_t *out, const state_t *in, int shared,
                                const lane_t *lanes, const plan_t *plan, int from_state,
                                uint64_t threshold);

/* compress_wk(out, in, wk, threshold): out[l] = in[l] compressed with one block that is the
   same in every lane, whose schedule wk[t] = W[t] + K[t] is given; returns as compress. */
typedef unsigned (*compress_wk_fn)(state_t *out, const state_t *in, const uint32_t *wk,
                                   uint64_t threshold);

/* How an engine wants its plans. */
typedef struct {
    int granule;    /* its rounds come in groups of this many: a plan skips a multiple */
    int window_min; /* digits at least in the window: a plan serves 10**window_min nonces */
    int needs;      /* PLAN_P1, PLAN_SUMS: what it takes from a plan besides the constant words */
} plan_style_t;

static const uint64_t POW10[MAX_DIGITS] = {
    1ULL,
    10ULL,
    100ULL,
    1000ULL,
    10000ULL,
    100000ULL,
    1000000ULL,
    10000000ULL,
    100000000ULL,
    1000000000ULL,
    10000000000ULL,
    100000000000ULL,
    1000000000000ULL,
    10000000000000ULL,
    100000000000000ULL,
    1000000000000000ULL,
    10000000000000000ULL,
    100000000000000000ULL,
    1000000000000000000ULL,
    10000000000000000000ULL,
};

static int decimal_digits(uint64_t n)
{
    int d = 1;
    while (d < MAX_DIGITS && n >= POW10[d])
        d++;
    return d;
}

static void write_decimal(uint8_t *p, int nd, uint64_t n)
{
    for (int i = nd - 1; i >= 0; i--) {
        p[i] = (uint8_t)('0' + n % 10);
        n /= 10;
    }
}

/* Add k to the ASCII decimal number ending at `last` (the caller guarantees it keeps its
   digit count). Returns how far left of `last` the carry went (0: only the last digit). */
static int decimal_add(uint8_t *last, unsigned k)
{
    uint8_t *p = last;
    unsigned d = (unsigned)(*p - '0') + k;
    while (d >= 10) {
        *p = (uint8_t)('0' + d % 10);
        d = d / 10 + (unsigned)(*--p - '0');
    }
    *p = (uint8_t)('0' + d);
    return (int)(last - p);
}

/*
 * The same for 1 <= k <= 99 on the last 8 digits at once, without a branch: each digit d is
 * biased to the byte 0xF6 + d, so that a plain 64-bit addition carries exactly as decimal
 * does (k's tens go to the next-to-last byte: a byte then receives at most 9 + 9 + 1, and
 * carries at most 1). Returns -1 and changes nothing if the carry would leave those 8 digits
 * (once in 10**8 / k calls); else the new digits, last one in the low byte, in *digits.
 */
static ALWAYS_INLINE int decimal_add8(uint8_t *last, unsigned k, uint64_t *digits)
{
    const uint64_t ones = 0x0101010101010101ULL;
    uint64_t x;
    memcpy(&x, last - 7, 8);
    x = BSWAP64(x);
    const uint64_t y = x + 0xC6 * ones + ((uint64_t)(k / 10) << 8) + k % 10;
    if (!(y >> 63)) /* the first of the 8 digits wrapped round */
        return -1;
    /* Bytes still >= 0xF6 did not wrap: take the bias off; the others are the new digit. */
    const uint64_t r = y - ((y >> 7) & ones) * 0xF6 + 0x30 * ones;
    const uint64_t be = BSWAP64(r);
    memcpy(last - 7, &be, 8);
    *digits = r;
    return (63 - CLZ64(x ^ r)) / 8;
}

static int leading_zero_nibbles(const uint32_t h[8])
{
    int z = 0;
    for (int i = 0; i < 8; i++) {
        uint32_t w = h[i];
        if (w) {
            while (!(w & 0xF0000000u)) {
                w <<= 4;
                z++;
            }
            return z;
        }
        z += 8;
    }
    return z;
}

/* A hash can have more than `zeros` leading zeros only if its first word is below this
   (for 8 or more: only if the first word is 0, and then leading_zero_nibbles decides). */
static ALWAYS_INLINE uint64_t candidate_threshold(int zeros)
{
    const int want = zeros + 1 < 8 ? zeros + 1 : 8;
    return (uint64_t)1 << (32 - 4 * want);
}

/* Where a segment's digits sit, and what a plan covers. Offsets are into the tail buffer
   (the bytes after the prefix's full blocks). */
typedef struct {
    size_t tail;       /* bytes of prefix and digits in the tail */
    int blocks;        /* tail blocks: 1 or 2 */
    int straddle;      /* digits in both tail blocks */
    size_t vb;         /* offset of the block hashed with a plan: 0 or 64 */
    size_t ws;         /* window start: a word boundary; bytes before it are the stable part */
    int j0, j1;        /* words of that block holding window digits */
    int window_digits; /* digits from ws on */
} layout_t;

static layout_t segment_layout(size_t rest, int nd, int window_min)
{
    layout_t s;
    s.tail = rest + (size_t)nd;
    s.blocks = s.tail + 9 <= 64 ? 1 : 2;
    const size_t last_digit = s.tail - 1;
    s.straddle = last_digit >= 64;
    s.vb = s.straddle ? 64 : 0;
    const size_t first_varying = nd > window_min ? s.tail - (size_t)window_min : rest;
    s.ws = first_varying & ~(size_t)3;
    if (s.ws < s.vb)
        s.ws = s.vb;
    s.j0 = (int)((s.ws - s.vb) / 4);
    s.j1 = (int)((last_digit - s.vb) / 4);
    s.window_digits = (int)(s.tail - (s.ws > rest ? s.ws : rest));
    return s;
}

/*
 * Search job->start .. job->start + job->count - 1 with an engine of `lanes` lanes whose
 * states keep standard word i at index perm[i] (perm == NULL: standard order). Always inlined
 * into each engine's entry point, so lanes, perm and the functions are constants there.
 */
static ALWAYS_INLINE void run_search(pow_search_t *job, const int lanes, compress_fn compress,
                                     compress_wk_fn compress_wk, const plan_style_t style,
                                     const int *perm)
{
    const size_t full = job->plen & ~(size_t)63;
    const size_t rest = job->plen - full; /* prefix bytes in the first tail block: 0..63 */
    const int h0_index = perm ? perm[0] : 0;

    uint32_t std[8];
    memcpy(std, IV, sizeof std);
    for (size_t off = 0; off < full; off += 64)
        compress_block(std, job->prefix + off);
    state_t mid;
    for (int i = 0; i < 8; i++)
        mid.w[perm ? perm[i] : i] = std[i];

    ALIGNAS(64) uint8_t buf[MAX_LANES][128];
    lane_t first[MAX_LANES], group[MAX_LANES];
    state_t after_first[MAX_LANES], out[MAX_LANES];
    ALIGNAS(32) uint32_t wk_second[64];
    plan_t plan;

    int best_zeros = -1;
    uint64_t best_nonce = job->start;
    uint64_t threshold = candidate_threshold(best_zeros);
    uint64_t n = job->start, remaining = job->count;

    job->found = 0;
    while (remaining) {
        /* One segment: nonces with the same number of digits, so the same layout. */
        const int nd = decimal_digits(n);
        const uint64_t seg_last = nd < MAX_DIGITS ? POW10[nd] - 1 : UINT64_MAX;
        const uint64_t seg_count = seg_last - n < remaining - 1 ? seg_last - n + 1 : remaining;
        const layout_t s = segment_layout(rest, nd, style.window_min);
        const size_t last_digit = s.tail - 1;
        const uint64_t bits = ((uint64_t)job->plen + (uint64_t)nd) * 8;
        const int skip = s.j0 - s.j0 % style.granule;

        uint8_t tmpl[128];
        memset(tmpl, 0, sizeof tmpl);
        memcpy(tmpl, job->prefix + full, rest);
        tmpl[s.tail] = 0x80;
        for (int i = 0; i < 8; i++)
            tmpl[s.blocks * 64 - 1 - i] = (uint8_t)(bits >> (8 * i));
        for (int l = 0; l < lanes; l++) {
            memcpy(buf[l], tmpl, (size_t)s.blocks * 64);
            /* Lanes past the segment's end hash a copy of the first nonce; ignored. */
            write_decimal(buf[l] + rest, nd, n + ((uint64_t)l < seg_count ? (uint64_t)l : 0));
            first[l].block = buf[l];
            group[l].block = buf[l] + s.vb;
            group[l].w[0] = load_be32(group[l].block + 4 * s.j0);
            group[l].w[1] = load_be32(group[l].block + 4 * s.j1);
        }
        if (s.blocks == 2 && !s.straddle)
            schedule_wk(wk_second, tmpl + 64);
        plan_pattern(&plan, s.j0, s.j1);
        /* For decimal_add8: the window's words from its 8 digits (all digits, since nd >= 8),
           the last one at byte o of word j1, followed there by padding. */
        const int fast_add = nd >= 8 && lanes < 100;
        const int o = (int)((last_digit - s.vb) & 3);
        const uint32_t j1_padding =
            load_be32(tmpl + s.vb + 4 * s.j1) & (uint32_t)(((uint64_t)1 << (8 * (3 - o))) - 1);

        int first_dirty = 1; /* straddle: after_first[] must be recomputed */
        int first_same = 0;  /* straddle: every valid lane has the same first block */
        int plan_ok = 0;     /* plan's schedule matches the stable bytes of every valid lane */
        int new_input = 1;   /* the plan's rounds part needs the input state again */
        int rounds_from = 0; /* and rounds from this one on again */
        uint64_t base = n, left = seg_count;
        for (;;) {
            const int valid = left < (uint64_t)lanes ? (int)left : lanes;
            const state_t *in = &mid;
            int shared = 1;
            if (s.straddle) {
                if (first_dirty) {
                    compress(after_first, &mid, 1, first, NULL, 0, 0);
                    first_dirty = 0;
                    first_same = memcmp(buf[0], buf[valid - 1], 64) == 0;
                    new_input = 1;
                }
                in = after_first;
                shared = first_same;
            }
            /* Lanes agree on the stable part unless the group spans a carry out of the window:
               compare the first and the last (the nonces are consecutive). */
            if (!plan_ok && plan.usable &&
                memcmp(buf[0] + s.vb, buf[valid - 1] + s.vb, s.ws - s.vb) == 0) {
                plan_schedule(&plan, buf[0] + s.vb, style.needs);
                plan_ok = 1;
            }
            int from_state = 0;
            if (plan_ok && skip > 0 && shared) {
                if (new_input || rounds_from < skip) {
                    plan_rounds(&plan, new_input ? in : NULL, rounds_from, skip, perm);
                    new_input = 0;
                    rounds_from = 64;
                }
                from_state = 1;
            }
            const plan_t *p = plan_ok ? &plan : NULL;
            unsigned candidates;
            if (s.blocks == 2 && !s.straddle) {
                compress(after_first, in, shared, group, p, from_state, 0);
                candidates = compress_wk(out, after_first, wk_second, threshold);
            } else {
                candidates = compress(out, in, shared, group, p, from_state, threshold);
            }

            if (job->digests) {
                for (int l = 0; l < valid; l++) {
                    uint8_t *d = job->digests + 32 * (base - job->start + (uint64_t)l);
                    for (int i = 0; i < 8; i++) {
                        const uint32_t word = out[l].w[perm ? perm[i] : i];
                        for (int j = 0; j < 4; j++)
                            d[4 * i + j] = (uint8_t)(word >> (24 - 8 * j));
                    }
                }
            }
            candidates &= valid < 32 ? (1u << valid) - 1 : ~0u;
            for (int l = 0; candidates && l < valid; l++) {
                if (!((candidates >> l) & 1) || (uint64_t)out[l].w[h0_index] >= threshold)
                    continue;
                uint32_t h[8];
                for (int i = 0; i < 8; i++)
                    h[i] = out[l].w[perm ? perm[i] : i];
                const int z = leading_zero_nibbles(h);
                if (z <= best_zeros)
                    continue;
                best_zeros = z;
                best_nonce = base + (uint64_t)l;
                memcpy(job->best_h, h, sizeof h);
                threshold = candidate_threshold(z);
                if (z >= job->difficulty) {
                    job->found = 1;
                    job->hashes = best_nonce - job->start + 1;
                    job->best_nonce = best_nonce;
                    job->best_zeros = best_zeros;
                    return;
                }
            }
            left -= (uint64_t)valid;
            if (!left)
                break;
            base += (uint64_t)valid;
            /* Next group: lane l gets base + l, if that is still in the segment. */
            for (int l = 0; l < lanes && (uint64_t)l < left; l++) {
                uint64_t digits;
                int went = fast_add ? decimal_add8(buf[l] + last_digit, (unsigned)lanes, &digits)
                                    : -1;
                if (went >= 0) {
                    const uint32_t wj1 = (uint32_t)(digits << (8 * (3 - o))) | j1_padding;
                    group[l].w[1] = wj1;
                    group[l].w[0] = s.j0 < s.j1 ? (uint32_t)(digits >> (8 * (o + 1))) : wj1;
                } else {
                    went = decimal_add(buf[l] + last_digit, (unsigned)lanes);
                    group[l].w[0] = load_be32(group[l].block + 4 * s.j0);
                    group[l].w[1] = load_be32(group[l].block + 4 * s.j1);
                }
                const size_t changed = last_digit - (size_t)went;
                if (changed < s.ws) {
                    /* The plan's words before the one that changed, and the rounds over them,
                       still hold. */
                    const int word = changed >= s.vb ? (int)((changed - s.vb) / 4) : 0;
                    if (word < rounds_from)
                        rounds_from = word;
                    if (s.ws > s.vb)
                        plan_ok = 0;
                    if (changed < s.vb)
                        first_dirty = 1;
                }
            }
        }
        n += seg_count;
        remaining -= seg_count;
    }
    job->hashes = job->count;
    job->best_nonce = best_nonce;
    job->best_zeros = best_zeros;
}

/* ------------------------------------------------------------------------------------------ */
/* Engine: portable scalar C, one nonce at a time                                             */

/* Plans here skip the rounds before the window, one by one. The schedule is computed in full
   as compress_block does: its constant terms from the plan cost more in loads and tests than
   they save in one lane (measured on Zen 5: 5% slower than no plan at all), so plans are
   light (constant words only), and cheap enough for a window of 2 digits. */
static const plan_style_t SCALAR_STYLE = {1, 2, 0};

static unsigned compress_scalar(state_t *out, const state_t *in, int shared,
                                const lane_t *lanes, const plan_t *p, int from_state,
                                uint64_t threshold)
{
    (void)shared;
    if (!p || !from_state) {
        *out = *in;
        compress_block(out->w, lanes[0].block);
        return (uint64_t)out->w[0] < threshold;
    }
    uint32_t w[16], r[8];
    memcpy(w, p->w, sizeof w);
    w[p->j0] = lanes[0].w[0];
    w[p->j1] = lanes[0].w[1];
    int t0 = p->skip;
    uint32_t v[8];
    memcpy(v, p->state.w, sizeof v);
    if (t0 == p->j0) {
        /* The first round that sees a window word: all but W was computed in the plan. */
        const uint32_t t1 = p->t1 + w[t0];
        v[7] = v[6];
        v[6] = v[5];
        v[5] = v[4];
        v[4] = v[3] + t1;
        v[3] = v[2];
        v[2] = v[1];
        v[1] = v[0];
        v[0] = t1 + p->t2;
        t0++;
    }
    for (int i = 0; i < 8; i++)
        r[(i - t0) & 7] = v[i];
    UNROLL
    for (int t = 0; t < 16; t++)
        if (t >= t0)
            RING_ROUND(r, t, w[t] + K256[t]);
    UNROLL
    for (int t = 16; t < 64; t++) {
        const uint32_t wt =
            SSIG1(w[(t - 2) & 15]) + w[(t - 7) & 15] + SSIG0(w[(t - 15) & 15]) + w[t & 15];
        w[t & 15] = wt;
        scalar_round(r, wt + K256[t]);
    }
    for (int i = 0; i < 8; i++)
        out->w[i] = in->w[i] + r[i];
    return (uint64_t)out->w[0] < threshold;
}

static unsigned compress_wk_scalar(state_t *out, const state_t *in, const uint32_t *wk,
                                   uint64_t threshold)
{
    uint32_t v[8];
    memcpy(v, in->w, sizeof v);
    UNROLL
    for (int t = 0; t < 64; t++)
        scalar_round(v, wk[t]);
    for (int i = 0; i < 8; i++)
        out->w[i] = in->w[i] + v[i];
    return (uint64_t)out->w[0] < threshold;
}

static void search_scalar(pow_search_t *job)
{
    run_search(job, 1, compress_scalar, compress_wk_scalar, SCALAR_STYLE, NULL);
}

#if POW_X86
/* ------------------------------------------------------------------------------------------ */
/* Engine: SHA-NI, SHANI_LANES nonces interleaved                                             */

/* SHA-NI keeps the state as ABEF and CDGH: words F E B A H G D C, so standard word i sits at
   SHANI_PERM[i]. */
static const int SHANI_PERM[8] = {3, 2, 7, 6, 1, 0, 5, 4};

/* sha256rnds2 has a latency of about 4 cycles; each message's rounds form one dependency
   chain: 4 chains keep it busy. Measured on Zen 3: 2 lanes -10%, 3 lanes -3%, 5 lanes -9%,
   6 lanes -28% against 4. */
#ifndef SHANI_LANES
#define SHANI_LANES 4
#endif

#define FOR_LANES(l) UNROLL for (int l = 0; l < SHANI_LANES; l++)

/* sha256rnds2 is what limits this engine (about 2 cycles each on Zen 5, where the message
   schedule alongside adds only 6%): what pays is skipping pairs of rounds. A window of 2
   digits puts it one word later than 3 for most prefix lengths (Structs prefixes: 8 rounds
   skipped instead of 6); its plans, redone every 100 nonces, are light and incremental. */
static const plan_style_t SHANI_STYLE = {2, 2, PLAN_P1};

/* A: the first state word after the feed-forward of ABEF (dword 3). */
#define SHANI_CANDIDATE(abef, l, threshold)                                                     \
    ((unsigned)((uint64_t)(uint32_t)_mm_extract_epi32((abef), 3) < (threshold)) << (l))

/* Rounds 4i .. 4i+3 for every lane, with the message schedule in m[l][0..3].
   Computing the whole schedule before the rounds was 25% slower on Zen 3. */
#define SHANI_STEP(i)                                                                           \
    do {                                                                                        \
        const __m128i k = _mm_load_si128((const __m128i *)&K256[4 * (i)]);                      \
        FOR_LANES(l)                                                                            \
        {                                                                                       \
            if ((i) < 4)                                                                        \
                m[l][(i) & 3] = _mm_shuffle_epi8(                                               \
                    _mm_loadu_si128((const __m128i *)(lanes[l].block + 16 * (i))), bswap);     \
            x[l] = _mm_add_epi32(m[l][(i) & 3], k);                                             \
            s1[l] = _mm_sha256rnds2_epu32(s1[l], s0[l], x[l]);                                  \
        }                                                                                       \
        if ((i) >= 3 && (i) <= 14) {                                                            \
            FOR_LANES(l)                                                                        \
            {                                                                                   \
                __m128i t = _mm_alignr_epi8(m[l][(i) & 3], m[l][((i) + 3) & 3], 4);             \
                m[l][((i) + 1) & 3] = _mm_sha256msg2_epu32(                                     \
                    _mm_add_epi32(m[l][((i) + 1) & 3], t), m[l][(i) & 3]);                      \
            }                                                                                   \
        }                                                                                       \
        FOR_LANES(l)                                                                            \
        {                                                                                       \
            x[l] = _mm_shuffle_epi32(x[l], 0x0E);                                               \
            s0[l] = _mm_sha256rnds2_epu32(s0[l], s1[l], x[l]);                                  \
        }                                                                                       \
        if ((i) >= 1 && (i) <= 12) {                                                            \
            FOR_LANES(l)                                                                        \
            m[l][((i) + 3) & 3] = _mm_sha256msg1_epu32(m[l][((i) + 3) & 3], m[l][(i) & 3]);     \
        }                                                                                       \
    } while (0)

/* The feed-forward into out[l] for every lane; returns the lanes whose A is below threshold. */
TARGET_SHANI static ALWAYS_INLINE unsigned shani_end(state_t *out, const state_t *in, int shared,
                                                     const __m128i *s0, const __m128i *s1,
                                                     uint64_t threshold)
{
    unsigned candidates = 0;
    FOR_LANES(l)
    {
        const state_t *q = shared ? in : in + l;
        const __m128i abef = _mm_add_epi32(s0[l], _mm_load_si128((const __m128i *)&q->w[0]));
        _mm_store_si128((__m128i *)&out[l].w[0], abef);
        _mm_store_si128((__m128i *)&out[l].w[4],
                        _mm_add_epi32(s1[l], _mm_load_si128((const __m128i *)&q->w[4])));
        candidates |= SHANI_CANDIDATE(abef, l, threshold);
    }
    return candidates;
}

/* Every block in full: first blocks of two, and groups that span a carry out of the window. */
TARGET_SHANI static unsigned compress_shani_full(state_t *out, const state_t *in, int shared,
                                                 const lane_t *lanes, uint64_t threshold)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i s0[SHANI_LANES], s1[SHANI_LANES], m[SHANI_LANES][4], x[SHANI_LANES];
    FOR_LANES(l)
    {
        const state_t *q = shared ? in : in + l;
        s0[l] = _mm_load_si128((const __m128i *)&q->w[0]);
        s1[l] = _mm_load_si128((const __m128i *)&q->w[4]);
    }
    SHANI_STEP(0);
    SHANI_STEP(1);
    SHANI_STEP(2);
    SHANI_STEP(3);
    SHANI_STEP(4);
    SHANI_STEP(5);
    SHANI_STEP(6);
    SHANI_STEP(7);
    SHANI_STEP(8);
    SHANI_STEP(9);
    SHANI_STEP(10);
    SHANI_STEP(11);
    SHANI_STEP(12);
    SHANI_STEP(13);
    SHANI_STEP(14);
    SHANI_STEP(15);
    return shani_end(out, in, shared, s0, s1, threshold);
}

/*
 * The same with a plan: groups of four message words that do not depend on the window come
 * from the plan (W + K ready for sha256rnds2, W for the schedule of later groups, and the
 * sha256msg1 partial sums), the window's words from the driver, and the first h pairs of
 * rounds are skipped when the state after them is in the plan. h and vg (which groups vary)
 * are constants in each copy (see compress_shani).
 */
#define PVAR(g) ((unsigned)((g) >= 0) & (vg >> ((g) & 15)) & 1u)
#define PGROUP(l, g) (PVAR(g) ? m[l][(g) & 3] : _mm_load_si128((const __m128i *)&p->w[4 * (g)]))

#define SHANI_PLAN_STEP(i)                                                                      \
    do {                                                                                        \
        if (2 * (i) + 1 < h)                                                                    \
            break;                                                                              \
        if (PVAR(i)) {                                                                          \
            const __m128i k = _mm_load_si128((const __m128i *)&K256[4 * (i)]);                  \
            FOR_LANES(l)                                                                        \
            {                                                                                   \
                if ((i) < 4)                                                                    \
                    m[l][(i) & 3] = _mm_or_si128(                                               \
                        _mm_load_si128((const __m128i *)&p->w[4 * (i)]),                        \
                        _mm_shuffle_epi8(win[l],                                                \
                                         _mm_load_si128((const __m128i *)p->place[(i) & 3])));  \
                x[l] = _mm_add_epi32(m[l][(i) & 3], k);                                         \
            }                                                                                   \
        } else {                                                                                \
            const __m128i c = _mm_load_si128((const __m128i *)&p->wk[4 * (i)]);                 \
            FOR_LANES(l)                                                                        \
            x[l] = c;                                                                           \
        }                                                                                       \
        if (2 * (i) >= h) {                                                                     \
            FOR_LANES(l)                                                                        \
            s1[l] = _mm_sha256rnds2_epu32(s1[l], s0[l], x[l]);                                  \
        }                                                                                       \
        if ((i) >= 3 && (i) <= 14 && PVAR((i) + 1)) {                                           \
            const unsigned partial_varies = PVAR((i) - 3) | PVAR((i) - 2);                      \
            FOR_LANES(l)                                                                        \
            {                                                                                   \
                const __m128i gi = PGROUP(l, (i));                                              \
                const __m128i t = _mm_alignr_epi8(gi, PGROUP(l, (i) - 1), 4);                   \
                const __m128i part =                                                            \
                    partial_varies ? m[l][((i) + 1) & 3]                                        \
                                   : _mm_load_si128((const __m128i *)p->p1[(i) + 1]);           \
                m[l][((i) + 1) & 3] = _mm_sha256msg2_epu32(_mm_add_epi32(part, t), gi);         \
            }                                                                                   \
        }                                                                                       \
        FOR_LANES(l)                                                                            \
        {                                                                                       \
            x[l] = _mm_shuffle_epi32(x[l], 0x0E);                                               \
            s0[l] = _mm_sha256rnds2_epu32(s0[l], s1[l], x[l]);                                  \
        }                                                                                       \
        if ((i) >= 1 && (i) <= 12 && PVAR((i) + 3) && (PVAR((i) - 1) | PVAR(i))) {              \
            FOR_LANES(l)                                                                        \
            m[l][((i) + 3) & 3] = _mm_sha256msg1_epu32(PGROUP(l, (i) - 1), PGROUP(l, (i)));     \
        }                                                                                       \
    } while (0)

/* The state of every lane at round 2h (the plan's if h > 0) and its window words. */
TARGET_SHANI static ALWAYS_INLINE void shani_begin(__m128i *s0, __m128i *s1, __m128i (*m)[4],
                                                   __m128i *win, const state_t *in, int shared,
                                                   const lane_t *lanes, const plan_t *p,
                                                   const int h)
{
    FOR_LANES(l)
    {
        /* Which slots are read is known only from vg: say they are all set. */
        m[l][0] = m[l][1] = m[l][2] = m[l][3] = _mm_setzero_si128();
        win[l] = _mm_insert_epi32(_mm_cvtsi32_si128((int)lanes[l].w[0]), (int)lanes[l].w[1], 1);
        const state_t *from = h ? &p->state : shared ? in : in + l;
        /* Each sha256rnds2 leaves ABEF where CDGH was: after an odd number they are swapped. */
        s0[l] = _mm_load_si128((const __m128i *)&from->w[h & 1 ? 4 : 0]);
        s1[l] = _mm_load_si128((const __m128i *)&from->w[h & 1 ? 0 : 4]);
    }
}

TARGET_SHANI static ALWAYS_INLINE unsigned shani_plan(state_t *out, const state_t *in,
                                                      int shared, const lane_t *lanes,
                                                      const plan_t *p, uint64_t threshold,
                                                      const int h, const unsigned vg)
{
    __m128i s0[SHANI_LANES], s1[SHANI_LANES], m[SHANI_LANES][4], x[SHANI_LANES];
    __m128i win[SHANI_LANES];
    shani_begin(s0, s1, m, win, in, shared, lanes, p, h);
    SHANI_PLAN_STEP(0);
    SHANI_PLAN_STEP(1);
    SHANI_PLAN_STEP(2);
    SHANI_PLAN_STEP(3);
    SHANI_PLAN_STEP(4);
    SHANI_PLAN_STEP(5);
    SHANI_PLAN_STEP(6);
    SHANI_PLAN_STEP(7);
    SHANI_PLAN_STEP(8);
    SHANI_PLAN_STEP(9);
    SHANI_PLAN_STEP(10);
    SHANI_PLAN_STEP(11);
    SHANI_PLAN_STEP(12);
    SHANI_PLAN_STEP(13);
    SHANI_PLAN_STEP(14);
    SHANI_PLAN_STEP(15);
    return shani_end(out, in, shared, s0, s1, threshold);
}

/* Every (h, var_groups & 0x3F) that a window of one or two words gives (groups 6..15 always
   vary, as PLAN_VAR_FROM says; tests/test_native_kernel.py checks this list): one copy each, so that every test of
   vg above folds away at compile time (testing at run time cost 5%). */
#define SHANI_PLANS(X)                                                                          \
    X(0, 0x31) X(1, 0x31) X(1, 0x33) X(2, 0x32) X(2, 0x22) X(3, 0x22) X(3, 0x26) X(4, 0x24)      \
    X(4, 0x34) X(5, 0x34) X(5, 0x3C) X(6, 0x38) X(6, 0x28) X(7, 0x38)

TARGET_SHANI static unsigned compress_shani(state_t *out, const state_t *in, int shared,
                                            const lane_t *lanes, const plan_t *p,
                                            int from_state, uint64_t threshold)
{
    if (p) {
        const unsigned h = from_state ? (unsigned)p->skip / 2 : 0;
        switch ((h << 6) | (p->var_groups & 0x3F)) {
#define SHANI_PLAN_CASE(hh, low)                                                                \
    case ((hh) << 6) | (low):                                                                   \
        return shani_plan(out, in, shared, lanes, p, threshold, hh, 0xFFC0u | (low));
            SHANI_PLANS(SHANI_PLAN_CASE)
        default:
            break;
        }
    }
    /* No plan, or one without a copy (from round 0 with a window in the middle words: only
       for a group of lanes across a carry into the first of two blocks). */
    return compress_shani_full(out, in, shared, lanes, threshold);
}

/* A block that is the same in every lane, with its schedule given: only the rounds. */
TARGET_SHANI static unsigned compress_wk_shani(state_t *out, const state_t *in,
                                               const uint32_t *wk, uint64_t threshold)
{
    __m128i s0[SHANI_LANES], s1[SHANI_LANES];
    FOR_LANES(l)
    {
        s0[l] = _mm_load_si128((const __m128i *)&in[l].w[0]);
        s1[l] = _mm_load_si128((const __m128i *)&in[l].w[4]);
    }
    UNROLL
    for (int i = 0; i < 16; i++) {
        __m128i x = _mm_loadu_si128((const __m128i *)&wk[4 * i]);
        FOR_LANES(l)
        s1[l] = _mm_sha256rnds2_epu32(s1[l], s0[l], x);
        x = _mm_shuffle_epi32(x, 0x0E);
        FOR_LANES(l)
        s0[l] = _mm_sha256rnds2_epu32(s0[l], s1[l], x);
    }
    return shani_end(out, in, 0, s0, s1, threshold);
}

TARGET_SHANI static void search_shani(pow_search_t *job)
{
    run_search(job, SHANI_LANES, compress_shani, compress_wk_shani, SHANI_STYLE, SHANI_PERM);
}

/* ------------------------------------------------------------------------------------------ */
/* Lanes of vectors: one nonce per 32-bit lane (sha256_lanes.h, once per vector width)        */

/* Where standard word i of a state sits in an engine's order perm (NULL: standard order). */
#define PERM(perm, i) ((perm) ? (perm)[i] : (i))

/* On top of each width's primitives, which are defined before each include. */
#define V_ROTR(x, n) V_OR(V_SRL((x), (n)), V_SLL((x), 32 - (n)))
#define V_BSIG0(x) V_XOR(V_XOR(V_ROTR((x), 2), V_ROTR((x), 13)), V_ROTR((x), 22))
#define V_BSIG1(x) V_XOR(V_XOR(V_ROTR((x), 6), V_ROTR((x), 11)), V_ROTR((x), 25))
#define V_SSIG0(x) V_XOR(V_XOR(V_ROTR((x), 7), V_ROTR((x), 18)), V_SRL((x), 3))
#define V_SSIG1(x) V_XOR(V_XOR(V_ROTR((x), 17), V_ROTR((x), 19)), V_SRL((x), 10))

/* One round on v[0..7] = a..h with wk = W[t] + K[t] (every lane). */
#define V_ROUND(v, wk)                                                                          \
    do {                                                                                        \
        const VEC ch_ = V_XOR(v[6], V_AND(v[4], V_XOR(v[5], v[6])));                            \
        /* Maj(a, b, c) = b ^ ((a ^ b) & (b ^ c)): this round's b ^ c is the last round's     \
           a ^ b, which the compiler reuses across the unrolled rounds (-3.5% instructions). */ \
        const VEC maj_ = V_XOR(v[1], V_AND(V_XOR(v[0], v[1]), V_XOR(v[1], v[2])));              \
        const VEC t1_ = V_ADD(V_ADD(v[7], V_BSIG1(v[4])), V_ADD(ch_, (wk)));                    \
        const VEC t2_ = V_ADD(V_BSIG0(v[0]), maj_);                                             \
        v[7] = v[6];                                                                            \
        v[6] = v[5];                                                                            \
        v[5] = v[4];                                                                            \
        v[4] = V_ADD(v[3], t1_);                                                                \
        v[3] = v[2];                                                                            \
        v[2] = v[1];                                                                            \
        v[1] = v[0];                                                                            \
        v[0] = V_ADD(t1_, t2_);                                                                 \
    } while (0)

/* W[t] + K[t] of round t under a plan: from the plan where it does not vary. */
#define V_PLAN_WK(w, p, t)                                                                      \
    ((t) >= PLAN_VAR_FROM || ((p)->var >> (t)) & 1 ? V_ADD((w)[t], V_SET1(K256[t]))             \
                                                    : V_SET1((p)->wk[t]))

/* ------------------------------------------------------------------------------------------ */
/* Engine: AVX2, 8 nonces in the 8 lanes of 256-bit vectors                                  */

static const plan_style_t AVX2_STYLE = {1, 3, PLAN_SUMS};

#define LANES 8
#define VEC __m256i
#define LANES_FN(name) avx2_##name
#define TARGET_LANES TARGET_AVX2
#define V_ADD(a, b) _mm256_add_epi32((a), (b))
#define V_XOR(a, b) _mm256_xor_si256((a), (b))
#define V_AND(a, b) _mm256_and_si256((a), (b))
#define V_OR(a, b) _mm256_or_si256((a), (b))
#define V_SRL(x, n) _mm256_srli_epi32((x), (n))
#define V_SLL(x, n) _mm256_slli_epi32((x), (n))
#define V_SET1(x) _mm256_set1_epi32((int)(x))
#define V_STORE(p, x) _mm256_store_si256((__m256i *)(p), (x))
#define V_LOAD(p) _mm256_load_si256((const __m256i *)(p))
#define V_LANES(E) _mm256_setr_epi32(E(0), E(1), E(2), E(3), E(4), E(5), E(6), E(7))
#define V_BELOW(x, y)                                                                           \
    (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32((y), (x))))
#include "sha256_lanes.h"

TARGET_AVX2 static unsigned compress_avx2(state_t *out, const state_t *in, int shared,
                                          const lane_t *lanes, const plan_t *p, int from_state,
                                          uint64_t threshold)
{
    return avx2_plan(out, in, shared, lanes, p, from_state, threshold, NULL);
}

TARGET_AVX2 static unsigned compress_wk_avx2(state_t *out, const state_t *in, const uint32_t *wk,
                                             uint64_t threshold)
{
    return avx2_wk(out, in, wk, threshold, NULL);
}

TARGET_AVX2 static void search_avx2(pow_search_t *job)
{
    run_search(job, 8, compress_avx2, compress_wk_avx2, AVX2_STYLE, NULL);
}

#undef LANES
#undef VEC
#undef LANES_FN
#undef TARGET_LANES
#undef V_ADD
#undef V_XOR
#undef V_AND
#undef V_OR
#undef V_SRL
#undef V_SLL
#undef V_SET1
#undef V_STORE
#undef V_LOAD
#undef V_LANES
#undef V_BELOW

/* ------------------------------------------------------------------------------------------ */
/* Engine: SHA-NI and SSE lanes in one instruction stream                                     */

/*
 * sha256rnds2 is what limits the sha-ni engine, and it leaves the vector ALUs beside it mostly
 * idle: lanes hashed with plain vector instructions in the same thread can use them. Lanes
 * 0 .. HYBRID_SSE - 1 are hashed by SHA-NI in groups of SHANI_LANES, one group after the
 * other, the last 4 in the lanes of 128-bit SSE vectors; in the usual case (a plan, from its
 * state) the SSE lanes' schedule and rounds are spread evenly between the SHA-NI steps, so
 * that the out-of-order core has both kinds of work in view. HYBRID_SHANI_GROUPS is the split.
 *
 * Why SSE and not AVX2: the SHA instructions exist only in the legacy SSE encoding, and on Zen
 * 3 a legacy SSE instruction while the upper halves of the YMM registers hold data costs
 * about 300 cycles (a sha256rnds2 chain with 256-bit adds beside it ran 130x slower than with
 * 128-bit ones; a first SHA-NI + AVX2 version of this engine hashed at 0.01x sha-ni). So this
 * engine is built for SSE4.1 only: nothing in it writes a YMM register.
 *
 * It is never picked for being listed: get_kernel("auto") runs it only where it measures
 * faster than sha-ni on the running CPU (pow/kernels/__init__.py).
 */
#ifndef HYBRID_SHANI_GROUPS
#define HYBRID_SHANI_GROUPS 4
#endif
#if HYBRID_SHANI_GROUPS < 1 || HYBRID_SHANI_GROUPS > 6
#error "HYBRID_SHANI_GROUPS must be 1..6"
#endif
#define HYBRID_SSE (SHANI_LANES * HYBRID_SHANI_GROUPS) /* the first SSE lane */
#define HYBRID_LANES (HYBRID_SSE + 4)
#define HYBRID_SLOTS (16 * HYBRID_SHANI_GROUPS) /* SHA-NI steps per call, skipped ones too */

/* SHA-NI's plans (pairs of rounds, a window of 2 digits, sha256msg1 sums) with the partial
   sums of the schedule that the SSE lanes take. */
static const plan_style_t HYBRID_STYLE = {2, 2, PLAN_P1 | PLAN_SUMS};

#define LANES 4
#define VEC __m128i
#define LANES_FN(name) sse_##name
#define TARGET_LANES TARGET_SHANI
#define V_ADD(a, b) _mm_add_epi32((a), (b))
#define V_XOR(a, b) _mm_xor_si128((a), (b))
#define V_AND(a, b) _mm_and_si128((a), (b))
#define V_OR(a, b) _mm_or_si128((a), (b))
#define V_SRL(x, n) _mm_srli_epi32((x), (n))
#define V_SLL(x, n) _mm_slli_epi32((x), (n))
#define V_SET1(x) _mm_set1_epi32((int)(x))
#define V_STORE(p, x) _mm_store_si128((__m128i *)(p), (x))
#define V_LOAD(p) _mm_load_si128((const __m128i *)(p))
#define V_LANES(E) _mm_setr_epi32(E(0), E(1), E(2), E(3))
#define V_BELOW(x, y) (unsigned)_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpgt_epi32((y), (x))))
#include "sha256_lanes.h"

/* Every part on its own: no plan, or not from the plan's state (rare: first blocks of two,
   groups across a carry). */
TARGET_SHANI static unsigned hybrid_parts(state_t *out, const state_t *in, int shared,
                                          const lane_t *lanes, const plan_t *p, int from_state,
                                          uint64_t threshold)
{
    unsigned candidates = 0;
    for (int g = 0; g < HYBRID_SSE; g += SHANI_LANES)
        candidates |= compress_shani(out + g, shared ? in : in + g, shared, lanes + g, p,
                                     from_state, threshold)
                      << g;
    return candidates | sse_plan(out + HYBRID_SSE, shared ? in : in + HYBRID_SSE, shared,
                                 lanes + HYBRID_SSE, p, from_state, threshold, SHANI_PERM)
                            << HYBRID_SSE;
}

/* The SSE lanes' share of SHA-NI step k (0 .. HYBRID_SLOTS - 1) of a call whose SSE rounds go
   on from round 2h + 1: a slice of the schedule, then a slice of the rounds. The schedule
   stays ahead: by the end of step k it holds words up to 16 + 48 (k + 1) / HYBRID_SLOTS - 1,
   never fewer than the rounds need, since 2h + 1 <= 16. One copy with run-time bounds (not
   one per plan case and step): unrolled into every case, this engine's code came to 1 MB and
   took 55 s to compile, for no gain in speed. */
TARGET_SHANI static NOINLINE void hybrid_sse_step(__m128i *v, __m128i *w, const plan_t *p,
                                                  int h, int k)
{
    const int first = 2 * h + 1, n = 64 - first;
    const int schedule_end = 16 + 48 * (k + 1) / HYBRID_SLOTS;
    for (int t = 16 + 48 * k / HYBRID_SLOTS; t < schedule_end; t++)
        sse_plan_word(w, p, t);
    const int rounds_end = first + n * (k + 1) / HYBRID_SLOTS;
    for (int r = first + n * k / HYBRID_SLOTS; r < rounds_end; r++)
        V_ROUND(v, V_PLAN_WK(w, p, r));
}

#define HYBRID_STEP(g, i)                                                                       \
    SHANI_PLAN_STEP(i);                                                                         \
    hybrid_sse_step(v, w, p, h, 16 * (g) + (i))

/* SHA-NI group g (lanes 4g .. 4g + 3), with the SSE lanes' work between its steps. */
#define HYBRID_GROUP(g)                                                                         \
    if ((g) < HYBRID_SHANI_GROUPS) {                                                            \
        __m128i s0[SHANI_LANES], s1[SHANI_LANES], m[SHANI_LANES][4], x[SHANI_LANES];            \
        __m128i win[SHANI_LANES];                                                               \
        shani_begin(s0, s1, m, win, in, 1, lanes + SHANI_LANES * (g), p, h);                    \
        HYBRID_STEP(g, 0);                                                                      \
        HYBRID_STEP(g, 1);                                                                      \
        HYBRID_STEP(g, 2);                                                                      \
        HYBRID_STEP(g, 3);                                                                      \
        HYBRID_STEP(g, 4);                                                                      \
        HYBRID_STEP(g, 5);                                                                      \
        HYBRID_STEP(g, 6);                                                                      \
        HYBRID_STEP(g, 7);                                                                      \
        HYBRID_STEP(g, 8);                                                                      \
        HYBRID_STEP(g, 9);                                                                      \
        HYBRID_STEP(g, 10);                                                                     \
        HYBRID_STEP(g, 11);                                                                     \
        HYBRID_STEP(g, 12);                                                                     \
        HYBRID_STEP(g, 13);                                                                     \
        HYBRID_STEP(g, 14);                                                                     \
        HYBRID_STEP(g, 15);                                                                     \
        candidates |= shani_end(out + SHANI_LANES * (g), in, 1, s0, s1, threshold)              \
                      << (SHANI_LANES * (g));                                                   \
    }

/* From the plan's state after round 2h >= 2, shared by every lane; h and vg as in shani_plan. */
TARGET_SHANI static ALWAYS_INLINE unsigned hybrid_plan(state_t *out, const state_t *in,
                                                       const lane_t *lanes, const plan_t *p,
                                                       uint64_t threshold, const int h,
                                                       const unsigned vg)
{
    __m128i s[8], v[8], w[64];
    sse_input(s, in, 1, SHANI_PERM);
    sse_window(w, lanes + HYBRID_SSE, p);
    if (sse_plan_state(v, w, p, SHANI_PERM) == 2 * h)
        V_ROUND(v, V_PLAN_WK(w, p, 2 * h));
    unsigned candidates = 0;
    HYBRID_GROUP(0)
    HYBRID_GROUP(1)
    HYBRID_GROUP(2)
    HYBRID_GROUP(3)
    HYBRID_GROUP(4)
    HYBRID_GROUP(5)
    return candidates | sse_finish(out + HYBRID_SSE, v, s, threshold, SHANI_PERM) << HYBRID_SSE;
}

TARGET_SHANI static unsigned compress_hybrid(state_t *out, const state_t *in, int shared,
                                             const lane_t *lanes, const plan_t *p,
                                             int from_state, uint64_t threshold)
{
    if (p && from_state) {
        switch (((unsigned)p->skip / 2 << 6) | (p->var_groups & 0x3F)) {
#define HYBRID_PLAN_CASE(hh, low)                                                               \
    case ((hh) << 6) | (low):                                                                   \
        if (hh) /* from a state: at least one pair of rounds skipped */                        \
            return hybrid_plan(out, in, lanes, p, threshold, hh, 0xFFC0u | (low));             \
        break;
            SHANI_PLANS(HYBRID_PLAN_CASE)
        default:
            break;
        }
    }
    return hybrid_parts(out, in, shared, lanes, p, from_state, threshold);
}

TARGET_SHANI static unsigned compress_wk_hybrid(state_t *out, const state_t *in,
                                                const uint32_t *wk, uint64_t threshold)
{
    unsigned candidates = 0;
    for (int g = 0; g < HYBRID_SSE; g += SHANI_LANES)
        candidates |= compress_wk_shani(out + g, in + g, wk, threshold) << g;
    return candidates | sse_wk(out + HYBRID_SSE, in + HYBRID_SSE, wk, threshold, SHANI_PERM)
                            << HYBRID_SSE;
}

TARGET_SHANI static void search_hybrid(pow_search_t *job)
{
    run_search(job, HYBRID_LANES, compress_hybrid, compress_wk_hybrid, HYBRID_STYLE, SHANI_PERM);
}

/* ------------------------------------------------------------------------------------------ */
/* CPU features                                                                               */

static void cpuid(unsigned leaf, unsigned sub, unsigned r[4])
{
#if POW_GNUC
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#else
    int q[4];
    __cpuidex(q, (int)leaf, (int)sub);
    for (int i = 0; i < 4; i++)
        r[i] = (unsigned)q[i];
#endif
}

static unsigned cpuid_max(void)
{
    unsigned r[4];
    cpuid(0, 0, r);
    return r[0];
}

static int cpu_has_shani(void)
{
    unsigned r[4];
    if (cpuid_max() < 7)
        return 0;
    cpuid(1, 0, r);
    const int ssse3 = (r[2] >> 9) & 1, sse41 = (r[2] >> 19) & 1;
    cpuid(7, 0, r);
    return ssse3 && sse41 && ((r[1] >> 29) & 1);
}

static int cpu_has_avx2(void)
{
    unsigned r[4];
    if (cpuid_max() < 7)
        return 0;
    cpuid(1, 0, r);
    const int osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1;
    if (!osxsave || !avx)
        return 0;
#if POW_GNUC
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    (void)xcr0_hi;
#else
    const unsigned xcr0_lo = (unsigned)_xgetbv(0);
#endif
    if ((xcr0_lo & 6) != 6) /* the OS saves XMM and YMM state */
        return 0;
    cpuid(7, 0, r);
    return (r[1] >> 5) & 1;
}
#endif /* POW_X86 */

#if POW_ARM64
/* ------------------------------------------------------------------------------------------ */
/* Engine: ARMv8 SHA-256 instructions, ARMSHA_LANES nonces interleaved                        */

/* Each lane's rounds are one dependency chain through sha256h/sha256h2 (latency 2-4 cycles on
   Apple and Neoverse cores, one or two issued per cycle); 4 chains fit 32 NEON registers. The
   state is ABCD and EFGH in standard order. */
#ifndef ARMSHA_LANES
#define ARMSHA_LANES 4
#endif

#define FOR_ALANES(l) UNROLL for (int l = 0; l < ARMSHA_LANES; l++)

/* sha256h/sha256h2 do four rounds: plans skip multiples of four. */
static const plan_style_t ARMSHA_STYLE = {4, 2, 0};

/* Four rounds for every lane with x[l] = W + K. */
#define ARM_ROUNDS4()                                                                           \
    FOR_ALANES(l)                                                                               \
    {                                                                                           \
        const uint32x4_t abcd_ = s0[l];                                                         \
        s0[l] = vsha256hq_u32(s0[l], s1[l], x[l]);                                              \
        s1[l] = vsha256h2q_u32(s1[l], abcd_, x[l]);                                             \
    }

/* Feed-forward and store; returns the lanes whose A is below threshold. */
#define ARM_FINISH(state_of)                                                                    \
    do {                                                                                        \
        FOR_ALANES(l)                                                                           \
        {                                                                                       \
            const state_t *q_ = (state_of);                                                     \
            const uint32x4_t abcd_ = vaddq_u32(s0[l], vld1q_u32(&q_->w[0]));                    \
            vst1q_u32(&out[l].w[0], abcd_);                                                     \
            vst1q_u32(&out[l].w[4], vaddq_u32(s1[l], vld1q_u32(&q_->w[4])));                    \
            candidates |= (unsigned)((uint64_t)vgetq_lane_u32(abcd_, 0) < threshold) << l;      \
        }                                                                                       \
    } while (0)

TARGET_ARMSHA static ALWAYS_INLINE uint32x4_t arm_load_group(const uint8_t *block, int g)
{
    return vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(block + 16 * g)));
}

TARGET_ARMSHA static unsigned compress_arm_full(state_t *out, const state_t *in, int shared,
                                                const lane_t *lanes, uint64_t threshold)
{
    uint32x4_t s0[ARMSHA_LANES], s1[ARMSHA_LANES], m[ARMSHA_LANES][4], x[ARMSHA_LANES];
    FOR_ALANES(l)
    {
        const state_t *q = shared ? in : in + l;
        s0[l] = vld1q_u32(&q->w[0]);
        s1[l] = vld1q_u32(&q->w[4]);
        for (int g = 0; g < 4; g++)
            m[l][g] = arm_load_group(lanes[l].block, g);
    }
    UNROLL
    for (int i = 0; i < 16; i++) {
        const uint32x4_t k = vld1q_u32(&K256[4 * i]);
        FOR_ALANES(l)
        x[l] = vaddq_u32(m[l][i & 3], k);
        ARM_ROUNDS4();
        if (i < 12) {
            FOR_ALANES(l)
            m[l][i & 3] = vsha256su1q_u32(vsha256su0q_u32(m[l][i & 3], m[l][(i + 1) & 3]),
                                          m[l][(i + 2) & 3], m[l][(i + 3) & 3]);
        }
    }
    unsigned candidates = 0;
    ARM_FINISH(shared ? in : in + l);
    return candidates;
}

#define AVAR(g) ((vg >> (g)) & 1u)
#define AGROUP(l, g) (AVAR(g) ? m[l][(g) & 3] : vld1q_u32(&p->w[4 * (g)]))

/* With a plan, from round 4 * s on (s a constant in each copy): the groups of four message
   words that do not depend on the window come from the plan. */
TARGET_ARMSHA static ALWAYS_INLINE unsigned arm_plan(state_t *out, const state_t *in,
                                                     int shared, const lane_t *lanes,
                                                     const plan_t *p, uint64_t threshold,
                                                     const int s)
{
    const unsigned vg = p->var_groups;
    uint32x4_t s0[ARMSHA_LANES], s1[ARMSHA_LANES], m[ARMSHA_LANES][4], x[ARMSHA_LANES];
    FOR_ALANES(l)
    {
        m[l][0] = m[l][1] = m[l][2] = m[l][3] = vdupq_n_u32(0);
        const state_t *from = s ? &p->state : shared ? in : in + l;
        s0[l] = vld1q_u32(&from->w[0]);
        s1[l] = vld1q_u32(&from->w[4]);
        for (int g = 0; g < 4; g++)
            if (AVAR(g))
                m[l][g] = arm_load_group(lanes[l].block, g);
    }
    /* Groups 4 .. s+3 would have been made during the skipped steps. */
    UNROLL
    for (int g = 4; g < s + 4; g++) {
        if (AVAR(g)) {
            FOR_ALANES(l)
            m[l][g & 3] = vsha256su1q_u32(vsha256su0q_u32(AGROUP(l, g - 4), AGROUP(l, g - 3)),
                                          AGROUP(l, g - 2), AGROUP(l, g - 1));
        }
    }
    UNROLL
    for (int i = 0; i < 16; i++) {
        if (i < s)
            continue;
        if (AVAR(i)) {
            const uint32x4_t k = vld1q_u32(&K256[4 * i]);
            FOR_ALANES(l)
            x[l] = vaddq_u32(m[l][i & 3], k);
        } else {
            const uint32x4_t c = vld1q_u32(&p->wk[4 * i]);
            FOR_ALANES(l)
            x[l] = c;
        }
        ARM_ROUNDS4();
        if (i < 12 && AVAR(i + 4)) {
            FOR_ALANES(l)
            m[l][i & 3] = vsha256su1q_u32(vsha256su0q_u32(AGROUP(l, i), AGROUP(l, i + 1)),
                                          AGROUP(l, i + 2), AGROUP(l, i + 3));
        }
    }
    unsigned candidates = 0;
    ARM_FINISH(shared ? in : in + l);
    return candidates;
}

TARGET_ARMSHA static unsigned compress_arm(state_t *out, const state_t *in, int shared,
                                           const lane_t *lanes, const plan_t *p,
                                           int from_state, uint64_t threshold)
{
    if (!p)
        return compress_arm_full(out, in, shared, lanes, threshold);
    switch (from_state ? p->skip / 4 : 0) {
    case 0:
        return arm_plan(out, in, shared, lanes, p, threshold, 0);
    case 1:
        return arm_plan(out, in, shared, lanes, p, threshold, 1);
    case 2:
        return arm_plan(out, in, shared, lanes, p, threshold, 2);
    default:
        return arm_plan(out, in, shared, lanes, p, threshold, 3);
    }
}

TARGET_ARMSHA static unsigned compress_wk_arm(state_t *out, const state_t *in,
                                              const uint32_t *wk, uint64_t threshold)
{
    uint32x4_t s0[ARMSHA_LANES], s1[ARMSHA_LANES], x[ARMSHA_LANES];
    FOR_ALANES(l)
    {
        s0[l] = vld1q_u32(&in[l].w[0]);
        s1[l] = vld1q_u32(&in[l].w[4]);
    }
    UNROLL
    for (int i = 0; i < 16; i++) {
        const uint32x4_t c = vld1q_u32(&wk[4 * i]);
        FOR_ALANES(l)
        x[l] = c;
        ARM_ROUNDS4();
    }
    unsigned candidates = 0;
    ARM_FINISH(in + l);
    return candidates;
}

TARGET_ARMSHA static void search_arm(pow_search_t *job)
{
    run_search(job, ARMSHA_LANES, compress_arm, compress_wk_arm, ARMSHA_STYLE, NULL);
}

static int cpu_has_armsha(void)
{
#if defined(__APPLE__)
    return 1; /* every Apple arm64 CPU has them */
#elif defined(__linux__) || defined(__ANDROID__)
    return (getauxval(AT_HWCAP) & HWCAP_SHA2) != 0;
#elif defined(__FreeBSD__)
    unsigned long hwcap = 0;
    return elf_aux_info(AT_HWCAP, &hwcap, sizeof hwcap) == 0 && (hwcap & HWCAP_SHA2) != 0;
#elif defined(_WIN32)
    return IsProcessorFeaturePresent(PF_ARM_V8_CRYPTO_INSTRUCTIONS_AVAILABLE) != 0;
#else
    return 0;
#endif
}
#endif /* POW_ARM64 */

/* ------------------------------------------------------------------------------------------ */
/* Engines                                                                                    */

typedef struct {
    const char *name;
    void (*search)(pow_search_t *);
    int (*available)(void); /* NULL: always */
    const plan_style_t *style;
} engine_t;

static const engine_t ENGINES[] = {
#if POW_X86
    {"sha-ni", search_shani, cpu_has_shani, &SHANI_STYLE},
    {"avx2", search_avx2, cpu_has_avx2, &AVX2_STYLE},
    {"sha-ni+sse", search_hybrid, cpu_has_shani, &HYBRID_STYLE},
#endif
#if POW_ARM64
    {"armv8-sha2", search_arm, cpu_has_armsha, &ARMSHA_STYLE},
#endif
    {"scalar-c", search_scalar, NULL, &SCALAR_STYLE},
};

#define N_ENGINES ((int)(sizeof ENGINES / sizeof ENGINES[0]))

int pow_engine_count(void) { return N_ENGINES; }

const char *pow_engine_name(int engine)
{
    return engine >= 0 && engine < N_ENGINES ? ENGINES[engine].name : NULL;
}

int pow_engine_available(int engine)
{
    if (engine < 0 || engine >= N_ENGINES)
        return 0;
    return ENGINES[engine].available ? ENGINES[engine].available() : 1;
}

int pow_engine_find(const char *name)
{
    for (int i = 0; i < N_ENGINES; i++)
        if (strcmp(ENGINES[i].name, name) == 0)
            return pow_engine_available(i) ? i : -1;
    return -1;
}

void pow_search(int engine, pow_search_t *job) { ENGINES[engine].search(job); }

double pow_rounds_per_hash(int engine, size_t plen, int digits)
{
    if (engine < 0 || engine >= N_ENGINES || digits < 1 || digits > MAX_DIGITS)
        return 0.0;
    const plan_style_t *style = ENGINES[engine].style;
    const layout_t s = segment_layout(plen & 63, digits, style->window_min);
    const int skip = s.j0 - s.j0 % style->granule;
    double rounds = 64 - skip;
    if (s.blocks == 2 && !s.straddle)
        rounds += 64; /* a second block of padding only */
    if (s.straddle)   /* the first block again whenever a carry reaches it */
        rounds += 64.0 / (double)POW10[s.tail - 64];
    /* A carry out of the window mostly changes the word before it: the plan redoes that
       word's rounds, if it skipped them. */
    if (s.window_digits < digits && skip >= s.j0)
        rounds += 1.0 / (double)POW10[s.window_digits];
    return rounds;
}
