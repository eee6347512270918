/*
 * pow._sha256: compiled proof-of-work search kernels.
 *
 * search(engine, prefix, start, count, difficulty) hashes SHA-256(prefix + str(n)) for n in
 * [start, start + count) in order, stops at the first n whose hex digest starts with at least
 * `difficulty` zeros, and reports the earliest n with the most leading zeros among those
 * hashed: exactly what pow.kernel.HashlibKernel does, only faster.
 *
 * How:
 * - The SHA-256 state after the prefix's full 64-byte blocks (the midstate) is computed once
 *   per call; per nonce only the 1 or 2 tail blocks (rest of the prefix, the decimal digits,
 *   padding, length) are compressed.
 * - The range is split into segments of equal digit count (9 -> 10, 99 -> 100, ...), so the
 *   message length, padding and number of tail blocks are fixed inside a segment.
 * - Each engine hashes LANES consecutive nonces at once. Lane l keeps its own tail buffer
 *   with nonce base + l written in ASCII and adds LANES to it in place (decimal add with
 *   carry) for the next group: no formatting per nonce.
 * - With two tail blocks the state after the first one is cached per lane and recomputed
 *   only when a carry reaches a digit inside the first block.
 * - Leading zeros are checked on the first state word (a compare against a threshold); only
 *   a candidate for a new best is looked at closely, and only the best is turned into hex.
 *
 * Engines (fastest first): "sha-ni" (x86 SHA extensions, 3 nonces interleaved), "avx2"
 * (8 lanes in 256-bit vectors), "scalar-c" (portable C). The x86 ones are compiled with
 * target attributes and chosen at run time by cpuid, so the module runs on any x86-64 and
 * builds anywhere (non-x86 gets scalar-c only).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define POW_GNUC 1
#define ALWAYS_INLINE inline __attribute__((always_inline))
#define ALIGNED(n) __attribute__((aligned(n)))
#else
#define POW_GNUC 0
#define ALWAYS_INLINE inline
#define ALIGNED(n)
#endif

#if POW_GNUC && (defined(__x86_64__) || defined(__i386__))
#define POW_X86 1
#include <cpuid.h>
#include <immintrin.h>
#define TARGET_SHANI __attribute__((target("sha,sse4.1,ssse3")))
#define TARGET_AVX2 __attribute__((target("avx2")))
#else
#define POW_X86 0
#endif

#if POW_GNUC
#define UNROLL(n) _Pragma("GCC unroll 64")
#else
#define UNROLL(n)
#endif

/* ------------------------------------------------------------------------------------------ */
/* SHA-256 constants and the portable compression function                                   */

static const uint32_t IV[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static const uint32_t K256[64] ALIGNED(16) = {
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

/* One SHA-256 compression of a 64-byte block into h[8] (standard word order). */
static void compress_scalar(uint32_t h[8], const uint8_t *block)
{
    uint32_t w[16];
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    UNROLL(64)
    for (int t = 0; t < 64; t++) {
        uint32_t wt;
        if (t < 16) {
            wt = w[t] = load_be32(block + 4 * t);
        } else {
            wt = SSIG1(w[(t - 2) & 15]) + w[(t - 7) & 15] + SSIG0(w[(t - 15) & 15]) + w[t & 15];
            w[t & 15] = wt;
        }
        uint32_t t1 = hh + BSIG1(e) + (g ^ (e & (f ^ g))) + K256[t] + wt;
        uint32_t t2 = BSIG0(a) + ((a & b) | (c & (a | b)));
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
}

/* ------------------------------------------------------------------------------------------ */
/* The search driver, shared by every engine                                                  */

/* A SHA-256 state in an engine's own word order (see `perm` below). */
typedef struct {
    uint32_t w[8];
} ALIGNED(32) state_t;

/* compress(out, in, shared, blocks): out[l] = in[shared ? 0 : l] compressed with blocks[l],
   for every lane l of the engine (feed-forward included). */
typedef void (*compress_fn)(state_t *out, const state_t *in, int shared,
                            const uint8_t *const *blocks);

#define MAX_LANES 8
#define MAX_DIGITS 20 /* 18446744073709551615 */

typedef struct {
    /* inputs */
    const uint8_t *prefix;
    size_t plen;
    uint64_t start, count; /* count >= 1 and start + count - 1 <= UINT64_MAX */
    int difficulty;        /* 1..64 */
    /* outputs */
    int found;
    uint64_t hashes, best_nonce;
    int best_zeros;
    uint32_t best_h[8]; /* standard word order */
} job_t;

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
static ALWAYS_INLINE int decimal_add(uint8_t *last, unsigned k)
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

/* Hashes whose first state word is below this may have more than `zeros` leading zeros. */
static ALWAYS_INLINE uint64_t candidate_threshold(int zeros)
{
    int want = zeros + 1;
    return want >= 8 ? 1 : (uint64_t)1 << (32 - 4 * want);
}

/*
 * Search job->start .. job->start + job->count - 1 with an engine of `lanes` lanes whose
 * states keep standard word i at index perm[i] (perm == NULL: standard order).
 * Always inlined into each engine's entry point, so lanes, perm and compress are constants.
 */
static ALWAYS_INLINE void run_search(job_t *job, const int lanes, compress_fn compress,
                                     const int *perm)
{
    const size_t full = job->plen & ~(size_t)63;
    const size_t rest = job->plen - full; /* prefix bytes in the first tail block: 0..63 */
    const int h0_index = perm ? perm[0] : 0;

    uint32_t std[8];
    memcpy(std, IV, sizeof std);
    for (size_t off = 0; off < full; off += 64)
        compress_scalar(std, job->prefix + off);
    state_t mid;
    for (int i = 0; i < 8; i++)
        mid.w[perm ? perm[i] : i] = std[i];

    uint8_t buf[MAX_LANES][128] ALIGNED(64);
    const uint8_t *first[MAX_LANES], *second[MAX_LANES];
    state_t after_first[MAX_LANES], out[MAX_LANES];

    int best_zeros = -1;
    uint64_t best_nonce = job->start;
    uint64_t threshold = candidate_threshold(best_zeros);
    uint64_t n = job->start, remaining = job->count;

    job->found = 0;
    while (remaining) {
        /* One segment: nonces with the same number of digits. */
        const int nd = decimal_digits(n);
        const uint64_t seg_last = nd < MAX_DIGITS ? POW10[nd] - 1 : UINT64_MAX;
        const uint64_t seg_count = seg_last - n < remaining - 1 ? seg_last - n + 1 : remaining;
        const size_t tail = rest + (size_t)nd;
        const int blocks = tail + 9 <= 64 ? 1 : 2;
        const size_t last_digit = tail - 1;
        const uint64_t bits = ((uint64_t)job->plen + (uint64_t)nd) * 8;

        uint8_t tmpl[128];
        memset(tmpl, 0, sizeof tmpl);
        memcpy(tmpl, job->prefix + full, rest);
        tmpl[tail] = 0x80;
        for (int i = 0; i < 8; i++)
            tmpl[blocks * 64 - 1 - i] = (uint8_t)(bits >> (8 * i));
        for (int l = 0; l < lanes; l++) {
            memcpy(buf[l], tmpl, (size_t)blocks * 64);
            /* Lanes past the segment's end hash a copy of the first nonce; ignored. */
            write_decimal(buf[l] + rest, nd, n + ((uint64_t)l < seg_count ? (uint64_t)l : 0));
            first[l] = buf[l];
            second[l] = buf[l] + 64;
        }

        int first_dirty = 1; /* after_first[] must be recomputed (two-block messages) */
        uint64_t base = n, left = seg_count;
        for (;;) {
            const int valid = left < (uint64_t)lanes ? (int)left : lanes;
            if (blocks == 1) {
                compress(out, &mid, 1, first);
            } else {
                if (first_dirty) {
                    compress(after_first, &mid, 1, first);
                    first_dirty = 0;
                }
                compress(out, after_first, 0, second);
            }
            for (int l = 0; l < valid; l++) {
                if ((uint64_t)out[l].w[h0_index] >= threshold)
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
                const int carry = decimal_add(buf[l] + last_digit, (unsigned)lanes);
                if (last_digit - (size_t)carry < 64)
                    first_dirty = 1;
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
/* Engine: portable scalar C                                                                  */

static void compress_scalar_lane(state_t *out, const state_t *in, int shared,
                                 const uint8_t *const *blocks)
{
    (void)shared;
    *out = *in;
    compress_scalar(out->w, blocks[0]);
}

static void search_scalar(job_t *job) { run_search(job, 1, compress_scalar_lane, NULL); }

#if POW_X86
/* ------------------------------------------------------------------------------------------ */
/* Engine: SHA-NI, SHANI_LANES independent messages interleaved                              */

/* SHA-NI keeps the state as ABEF and CDGH: engine word j holds standard word i where
   SHANI_PERM[i] = j, i.e. words F E B A H G D C. */
static const int SHANI_PERM[8] = {3, 2, 7, 6, 1, 0, 5, 4};

#ifndef SHANI_LANES
#define SHANI_LANES 3
#endif

#define FOR_LANES(l) UNROLL(8) for (int l = 0; l < SHANI_LANES; l++)

/* Four rounds (i = 0..15) for every lane, with the message schedule in m[l][0..3]. */
#define SHANI_STEP(i)                                                                           \
    do {                                                                                        \
        const __m128i k = _mm_load_si128((const __m128i *)&K256[4 * (i)]);                      \
        FOR_LANES(l)                                                                            \
        {                                                                                       \
            if ((i) < 4)                                                                        \
                m[l][(i) & 3] = _mm_shuffle_epi8(                                               \
                    _mm_loadu_si128((const __m128i *)(blocks[l] + 16 * (i))), bswap);           \
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

TARGET_SHANI static void compress_shani(state_t *out, const state_t *in, int shared,
                                        const uint8_t *const *blocks)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i s0[SHANI_LANES], s1[SHANI_LANES], m[SHANI_LANES][4], x[SHANI_LANES];
    FOR_LANES(l)
    {
        const state_t *p = shared ? in : in + l;
        s0[l] = _mm_load_si128((const __m128i *)&p->w[0]);
        s1[l] = _mm_load_si128((const __m128i *)&p->w[4]);
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
    FOR_LANES(l)
    {
        const state_t *p = shared ? in : in + l;
        _mm_store_si128((__m128i *)&out[l].w[0],
                        _mm_add_epi32(s0[l], _mm_load_si128((const __m128i *)&p->w[0])));
        _mm_store_si128((__m128i *)&out[l].w[4],
                        _mm_add_epi32(s1[l], _mm_load_si128((const __m128i *)&p->w[4])));
    }
}

TARGET_SHANI static void search_shani(job_t *job)
{
    run_search(job, SHANI_LANES, compress_shani, SHANI_PERM);
}

/* ------------------------------------------------------------------------------------------ */
/* Engine: AVX2, 8 messages in the 8 lanes of 256-bit vectors                                */

#define V_ROTR(x, n) _mm256_or_si256(_mm256_srli_epi32((x), (n)), _mm256_slli_epi32((x), 32 - (n)))
#define V_ADD(a, b) _mm256_add_epi32((a), (b))
#define V_XOR(a, b) _mm256_xor_si256((a), (b))
#define V_BSIG0(x) V_XOR(V_XOR(V_ROTR((x), 2), V_ROTR((x), 13)), V_ROTR((x), 22))
#define V_BSIG1(x) V_XOR(V_XOR(V_ROTR((x), 6), V_ROTR((x), 11)), V_ROTR((x), 25))
#define V_SSIG0(x) V_XOR(V_XOR(V_ROTR((x), 7), V_ROTR((x), 18)), _mm256_srli_epi32((x), 3))
#define V_SSIG1(x) V_XOR(V_XOR(V_ROTR((x), 17), V_ROTR((x), 19)), _mm256_srli_epi32((x), 10))

TARGET_AVX2 static void compress_avx2(state_t *out, const state_t *in, int shared,
                                      const uint8_t *const *blocks)
{
    __m256i s[8], w[16];
    for (int i = 0; i < 8; i++) {
        if (shared)
            s[i] = _mm256_set1_epi32((int)in[0].w[i]);
        else
            s[i] = _mm256_setr_epi32((int)in[0].w[i], (int)in[1].w[i], (int)in[2].w[i],
                                     (int)in[3].w[i], (int)in[4].w[i], (int)in[5].w[i],
                                     (int)in[6].w[i], (int)in[7].w[i]);
    }
    UNROLL(16)
    for (int i = 0; i < 16; i++)
        w[i] = _mm256_setr_epi32(
            (int)load_be32(blocks[0] + 4 * i), (int)load_be32(blocks[1] + 4 * i),
            (int)load_be32(blocks[2] + 4 * i), (int)load_be32(blocks[3] + 4 * i),
            (int)load_be32(blocks[4] + 4 * i), (int)load_be32(blocks[5] + 4 * i),
            (int)load_be32(blocks[6] + 4 * i), (int)load_be32(blocks[7] + 4 * i));
    __m256i a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
    UNROLL(64)
    for (int t = 0; t < 64; t++) {
        __m256i wt;
        if (t < 16) {
            wt = w[t];
        } else {
            wt = V_ADD(V_ADD(V_SSIG1(w[(t - 2) & 15]), w[(t - 7) & 15]),
                       V_ADD(V_SSIG0(w[(t - 15) & 15]), w[t & 15]));
            w[t & 15] = wt;
        }
        __m256i ch = V_XOR(g, _mm256_and_si256(e, V_XOR(f, g)));
        __m256i maj = _mm256_or_si256(_mm256_and_si256(a, b),
                                      _mm256_and_si256(c, _mm256_or_si256(a, b)));
        __m256i t1 = V_ADD(V_ADD(V_ADD(h, V_BSIG1(e)), V_ADD(ch, wt)),
                           _mm256_set1_epi32((int)K256[t]));
        __m256i t2 = V_ADD(V_BSIG0(a), maj);
        h = g;
        g = f;
        f = e;
        e = V_ADD(d, t1);
        d = c;
        c = b;
        b = a;
        a = V_ADD(t1, t2);
    }
    uint32_t words[8][8] ALIGNED(32);
    _mm256_store_si256((__m256i *)words[0], V_ADD(a, s[0]));
    _mm256_store_si256((__m256i *)words[1], V_ADD(b, s[1]));
    _mm256_store_si256((__m256i *)words[2], V_ADD(c, s[2]));
    _mm256_store_si256((__m256i *)words[3], V_ADD(d, s[3]));
    _mm256_store_si256((__m256i *)words[4], V_ADD(e, s[4]));
    _mm256_store_si256((__m256i *)words[5], V_ADD(f, s[5]));
    _mm256_store_si256((__m256i *)words[6], V_ADD(g, s[6]));
    _mm256_store_si256((__m256i *)words[7], V_ADD(h, s[7]));
    for (int l = 0; l < 8; l++)
        for (int i = 0; i < 8; i++)
            out[l].w[i] = words[i][l];
}

TARGET_AVX2 static void search_avx2(job_t *job) { run_search(job, 8, compress_avx2, NULL); }

/* ------------------------------------------------------------------------------------------ */
/* CPU features                                                                               */

static int cpu_has_shani(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    const int ssse3 = (c >> 9) & 1, sse41 = (c >> 19) & 1;
    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return ssse3 && sse41 && ((b >> 29) & 1);
}

static int cpu_has_avx2(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx)
        return 0;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 6) != 6) /* the OS saves XMM and YMM state */
        return 0;
    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 5) & 1;
}
#endif /* POW_X86 */

/* ------------------------------------------------------------------------------------------ */
/* Python module                                                                              */

typedef struct {
    const char *name;
    void (*search)(job_t *);
    int available;
} engine_t;

static engine_t ENGINES[] = {
#if POW_X86
    {"sha-ni", search_shani, 0},
    {"avx2", search_avx2, 0},
#endif
    {"scalar-c", search_scalar, 1},
};

#define N_ENGINES ((int)(sizeof ENGINES / sizeof ENGINES[0]))

static PyObject *py_engines(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    int n = 0;
    for (int i = 0; i < N_ENGINES; i++)
        n += ENGINES[i].available;
    PyObject *names = PyTuple_New(n);
    if (!names)
        return NULL;
    for (int i = 0, j = 0; i < N_ENGINES; i++) {
        if (!ENGINES[i].available)
            continue;
        PyObject *s = PyUnicode_FromString(ENGINES[i].name);
        if (!s) {
            Py_DECREF(names);
            return NULL;
        }
        PyTuple_SET_ITEM(names, j++, s);
    }
    return names;
}

static PyObject *py_search(PyObject *self, PyObject *args)
{
    (void)self;
    const char *name;
    Py_buffer prefix;
    PyObject *start_obj, *count_obj;
    int difficulty;
    if (!PyArg_ParseTuple(args, "sy*OOi:search", &name, &prefix, &start_obj, &count_obj,
                          &difficulty))
        return NULL;

    PyObject *result = NULL;
    const engine_t *engine = NULL;
    for (int i = 0; i < N_ENGINES; i++)
        if (ENGINES[i].available && strcmp(ENGINES[i].name, name) == 0)
            engine = &ENGINES[i];
    if (!engine) {
        PyErr_Format(PyExc_ValueError, "engine %R is unknown or not supported by this CPU",
                     PyTuple_GET_ITEM(args, 0));
        goto done;
    }
    if (!PyLong_Check(start_obj) || !PyLong_Check(count_obj)) {
        PyErr_SetString(PyExc_TypeError, "start and count must be integers");
        goto done;
    }
    const unsigned long long start = PyLong_AsUnsignedLongLong(start_obj);
    if (start == (unsigned long long)-1 && PyErr_Occurred())
        goto done;
    const unsigned long long count = PyLong_AsUnsignedLongLong(count_obj);
    if (count == (unsigned long long)-1 && PyErr_Occurred())
        goto done;
    if (count < 1) {
        PyErr_SetString(PyExc_ValueError, "count must be >= 1");
        goto done;
    }
    if (count - 1 > UINT64_MAX - start) {
        PyErr_SetString(PyExc_OverflowError, "start + count - 1 must be at most 2**64 - 1");
        goto done;
    }
    if (difficulty < 1 || difficulty > 64) {
        PyErr_SetString(PyExc_ValueError, "difficulty must be 1..64");
        goto done;
    }

    job_t job;
    memset(&job, 0, sizeof job);
    job.prefix = (const uint8_t *)prefix.buf;
    job.plen = (size_t)prefix.len;
    job.start = start;
    job.count = count;
    job.difficulty = difficulty;

    Py_BEGIN_ALLOW_THREADS
    engine->search(&job);
    Py_END_ALLOW_THREADS

    char hex[65];
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 8; j++)
            hex[8 * i + j] = digits[(job.best_h[i] >> (28 - 4 * j)) & 15];
    hex[64] = 0;

    if (job.found)
        result = Py_BuildValue("KKKis", (unsigned long long)job.best_nonce,
                               (unsigned long long)job.hashes,
                               (unsigned long long)job.best_nonce, job.best_zeros, hex);
    else
        result = Py_BuildValue("OKKis", Py_None, (unsigned long long)job.hashes,
                               (unsigned long long)job.best_nonce, job.best_zeros, hex);
done:
    PyBuffer_Release(&prefix);
    return result;
}

static PyMethodDef methods[] = {
    {"engines", py_engines, METH_NOARGS,
     "engines() -> tuple of the engine names this CPU can run, fastest first."},
    {"search", py_search, METH_VARARGS,
     "search(engine, prefix, start, count, difficulty) -> "
     "(found_nonce | None, hashes, best_nonce, best_zeros, best_hash)\n\n"
     "Hash prefix + str(n) for n in [start, start + count) with SHA-256, stopping at the first "
     "n whose hex digest has at least `difficulty` leading zeros. Needs count >= 1, "
     "start + count - 1 < 2**64 and 1 <= difficulty <= 64. Releases the GIL while hashing."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_sha256", "Compiled SHA-256 proof-of-work search kernels.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__sha256(void)
{
#if POW_X86
    ENGINES[0].available = cpu_has_shani();
    ENGINES[1].available = cpu_has_avx2();
#endif
    return PyModule_Create(&module);
}
