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
 * - Each engine hashes `lanes` consecutive nonces at once. Lane l keeps its own tail buffer
 *   with nonce base + l written in ASCII and adds `lanes` to it in place (decimal add with
 *   carry) for the next group: no formatting per nonce.
 * - Two tail blocks: if the digits reach into the second, the state after the first is
 *   cached per lane and recomputed only when a carry reaches a digit inside the first block;
 *   if the second holds only padding and length, its message schedule is computed once per
 *   segment.
 * - Leading zeros are checked on the first state word (a compare against a threshold); only
 *   a candidate for a new best is looked at closely, and only the best is turned into hex.
 *
 * Engines (fastest first): "sha-ni" (x86 SHA extensions, 4 nonces interleaved), "avx2"
 * (8 nonces in the lanes of 256-bit vectors), "scalar-c" (portable C). The x86 ones are
 * compiled with target attributes and picked at run time by cpuid, so the module runs on any
 * x86-64 CPU and builds anywhere (elsewhere it has scalar-c only).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define POW_GNUC 1
#define ALWAYS_INLINE inline __attribute__((always_inline))
#define ALIGNED(n) __attribute__((aligned(n)))
#define UNROLL _Pragma("GCC unroll 64")
#else
#define POW_GNUC 0
#define ALWAYS_INLINE inline
#define ALIGNED(n)
#define UNROLL
#endif

/* -DPOW_PORTABLE_ONLY builds what a non-x86 machine gets (to test that path). */
#if POW_GNUC && (defined(__x86_64__) || defined(__i386__)) && !defined(POW_PORTABLE_ONLY)
#define POW_X86 1
#include <cpuid.h>
#include <immintrin.h>
#define TARGET_SHANI __attribute__((target("sha,sse4.1,ssse3")))
#define TARGET_AVX2 __attribute__((target("avx2")))
#else
#define POW_X86 0
#endif

/* ------------------------------------------------------------------------------------------ */
/* SHA-256 constants and portable code                                                        */

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

/* One round on the state v[0..7] = a..h, with wk = W[t] + K[t]. */
static ALWAYS_INLINE void scalar_round(uint32_t v[8], uint32_t wk)
{
    const uint32_t a = v[0], b = v[1], c = v[2], e = v[4], f = v[5], g = v[6];
    const uint32_t t1 = v[7] + BSIG1(e) + (g ^ (e & (f ^ g))) + wk;
    /* Maj as b ^ ((a ^ b) & (b ^ c)): b ^ c is the last round's a ^ b (reused when unrolled) */
    const uint32_t t2 = BSIG0(a) + (b ^ ((a ^ b) & (b ^ c)));
    v[7] = g;
    v[6] = f;
    v[5] = e;
    v[4] = v[3] + t1;
    v[3] = c;
    v[2] = b;
    v[1] = a;
    v[0] = t1 + t2;
}

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
static void compress_scalar(uint32_t h[8], const uint8_t *block)
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

/* The same with the schedule (plus constants) given. */
static void compress_scalar_wk(uint32_t h[8], const uint32_t wk[64])
{
    uint32_t v[8];
    memcpy(v, h, sizeof v);
    UNROLL
    for (int t = 0; t < 64; t++)
        scalar_round(v, wk[t]);
    for (int i = 0; i < 8; i++)
        h[i] += v[i];
}

/* ------------------------------------------------------------------------------------------ */
/* The search driver, shared by every engine                                                  */

/* A SHA-256 state in an engine's own word order (see `perm` in run_search). */
typedef struct {
    uint32_t w[8];
} ALIGNED(32) state_t;

/* Rounds over the first words of a block that are the same in every lane (and stay so for
   many groups) are computed once, from lane 0, and skipped by the engine's compress. */
typedef struct {
    int skip;      /* rounds done (the number of such words); 0: nothing to skip */
    int last_word; /* words after this one are the same in every lane too (padding) */
    state_t state; /* after `skip` rounds, before the feed-forward */
    uint32_t w[16] ALIGNED(32); /* the block's words, from lane 0 */
} pre_t;

/* compress(out, in, shared, blocks, pre): out[l] = in[shared ? 0 : l] compressed with
   blocks[l], for every lane l of the engine (feed-forward included). pre, if not NULL (only
   ever with shared), was prepared from in[0] and the block's first bytes. */
typedef void (*compress_fn)(state_t *out, const state_t *in, int shared,
                            const uint8_t *const *blocks, const pre_t *pre);

/* compress_wk(out, in, wk): out[l] = in[l] compressed with one block that is the same in
   every lane, whose schedule wk[t] = W[t] + K[t] is given. */
typedef void (*compress_wk_fn)(state_t *out, const state_t *in, const uint32_t *wk);

/* prepare(pre, in, block, stable, varying_end): fill pre for blocks whose bytes before
   `stable` and from `varying_end` on are the same in every lane. */
typedef void (*prepare_fn)(pre_t *pre, const state_t *in, const uint8_t *block, size_t stable,
                           size_t varying_end);

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
    /* for tests: if not NULL, the digest of every nonce hashed goes here, 32 bytes each */
    uint8_t *digests;
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

/* A hash can have more than `zeros` leading zeros only if its first word is below this
   (for 8 or more: only if the first word is 0, and then leading_zero_nibbles decides). */
static ALWAYS_INLINE uint64_t candidate_threshold(int zeros)
{
    const int want = zeros + 1 < 8 ? zeros + 1 : 8;
    return (uint64_t)1 << (32 - 4 * want);
}

/* The last VARYING_DIGITS digits change all the time; a change further left invalidates
   precomputed rounds (once every 10**VARYING_DIGITS nonces). */
#ifndef VARYING_DIGITS
#define VARYING_DIGITS 3
#endif

/*
 * Search job->start .. job->start + job->count - 1 with an engine of `lanes` lanes whose
 * states keep standard word i at index perm[i] (perm == NULL: standard order); prepare may
 * be NULL. Always inlined into each engine's entry point, so lanes, perm and the functions
 * are constants there.
 */
static ALWAYS_INLINE void run_search(job_t *job, const int lanes, compress_fn compress,
                                     compress_wk_fn compress_wk, prepare_fn prepare,
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
    uint32_t wk_second[64] ALIGNED(32);
    pre_t pre;

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
        const size_t tail = rest + (size_t)nd;
        const int blocks = tail + 9 <= 64 ? 1 : 2;
        const size_t last_digit = tail - 1;
        const uint64_t bits = ((uint64_t)job->plen + (uint64_t)nd) * 8;
        /* Two blocks with digits in both ("straddle"): the first is cached per lane. Two
           blocks with all digits in the first: the second is the same for every nonce. */
        const int straddle = last_digit >= 64;
        /* The block that changes with every group, and its bytes that rarely change. */
        const size_t vb_offset = straddle ? 64 : 0;
        const size_t stable = nd > VARYING_DIGITS ? tail - VARYING_DIGITS : rest;
        const size_t stable_in_vb = stable > vb_offset ? stable - vb_offset : 0;
        const int use_pre = prepare != NULL && stable_in_vb >= 4;

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
        if (blocks == 2 && !straddle)
            schedule_wk(wk_second, tmpl + 64);

        int first_dirty = 1; /* straddle: after_first[] must be recomputed */
        int first_same = 0;  /* straddle: every valid lane has the same first block */
        int pre_valid = 0;   /* pre matches the stable bytes and the input state */
        uint64_t base = n, left = seg_count;
        for (;;) {
            const int valid = left < (uint64_t)lanes ? (int)left : lanes;
            const state_t *in = &mid;
            int shared = 1;
            if (straddle) {
                if (first_dirty) {
                    compress(after_first, &mid, 1, first, NULL);
                    first_dirty = 0;
                    first_same = memcmp(buf[0], buf[valid - 1], 64) == 0;
                    pre_valid = 0;
                }
                in = after_first;
                shared = first_same;
            }
            const pre_t *p = NULL;
            if (use_pre && shared) {
                if (!pre_valid && memcmp(buf[0] + vb_offset, buf[valid - 1] + vb_offset,
                                         stable_in_vb) == 0) {
                    prepare(&pre, in, buf[0] + vb_offset, stable_in_vb, tail - vb_offset);
                    pre_valid = 1;
                }
                if (pre_valid)
                    p = &pre;
            }
            if (blocks == 1) {
                compress(out, in, shared, first, p);
            } else if (straddle) {
                compress(out, in, shared, second, p);
            } else {
                compress(after_first, in, shared, first, p);
                compress_wk(out, after_first, wk_second);
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
                const size_t changed =
                    last_digit - (size_t)decimal_add(buf[l] + last_digit, (unsigned)lanes);
                if (changed < 64)
                    first_dirty = 1;
                if (changed < stable)
                    pre_valid = 0;
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

static void compress_scalar_lane(state_t *out, const state_t *in, int shared,
                                 const uint8_t *const *blocks, const pre_t *pre)
{
    (void)shared;
    (void)pre;
    *out = *in;
    compress_scalar(out->w, blocks[0]);
}

static void compress_wk_scalar_lane(state_t *out, const state_t *in, const uint32_t *wk)
{
    *out = *in;
    compress_scalar_wk(out->w, wk);
}

static void search_scalar(job_t *job)
{
    run_search(job, 1, compress_scalar_lane, compress_wk_scalar_lane, NULL, NULL);
}

#if POW_X86
/* ------------------------------------------------------------------------------------------ */
/* Engine: SHA-NI, SHANI_LANES nonces interleaved                                             */

/* SHA-NI keeps the state as ABEF and CDGH: words F E B A H G D C, so standard word i sits at
   SHANI_PERM[i]. */
static const int SHANI_PERM[8] = {3, 2, 7, 6, 1, 0, 5, 4};

/* sha256rnds2 has a latency of about 4 cycles and a throughput of about 1 per cycle (Zen 3),
   and each message's rounds form one dependency chain: 4 chains keep it busy. Measured on
   Zen 3: 2 lanes -10%, 3 lanes -3%, 5 lanes -9%, 6 lanes -28% against 4. */
#ifndef SHANI_LANES
#define SHANI_LANES 4
#endif

#define FOR_LANES(l) UNROLL for (int l = 0; l < SHANI_LANES; l++)

/* Rounds 4i .. 4i+3 for every lane, with the message schedule in m[l][0..3].
   sha256rnds2 alone would allow about 32 cycles per block; this runs at about 65 on Zen 3,
   the rest going to the schedule (sha256msg2 takes about 2 cycles) and to the spills of 4
   lanes in 16 registers. So precomputing the first rounds over words that are the same in
   every lane (as the AVX2 engine does) did not pay here: +1% for one block, slower for two.
   Computing the whole schedule before the rounds was 25% slower. */
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
                                        const uint8_t *const *blocks, const pre_t *pre)
{
    (void)pre;
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

/* A block that is the same in every lane, with its schedule given: only the rounds. */
TARGET_SHANI static void compress_wk_shani(state_t *out, const state_t *in, const uint32_t *wk)
{
    __m128i s0[SHANI_LANES], s1[SHANI_LANES];
    FOR_LANES(l)
    {
        s0[l] = _mm_load_si128((const __m128i *)&in[l].w[0]);
        s1[l] = _mm_load_si128((const __m128i *)&in[l].w[4]);
    }
    UNROLL
    for (int i = 0; i < 16; i++) {
        __m128i x = _mm_load_si128((const __m128i *)&wk[4 * i]);
        FOR_LANES(l)
        s1[l] = _mm_sha256rnds2_epu32(s1[l], s0[l], x);
        x = _mm_shuffle_epi32(x, 0x0E);
        FOR_LANES(l)
        s0[l] = _mm_sha256rnds2_epu32(s0[l], s1[l], x);
    }
    FOR_LANES(l)
    {
        _mm_store_si128((__m128i *)&out[l].w[0],
                        _mm_add_epi32(s0[l], _mm_load_si128((const __m128i *)&in[l].w[0])));
        _mm_store_si128((__m128i *)&out[l].w[4],
                        _mm_add_epi32(s1[l], _mm_load_si128((const __m128i *)&in[l].w[4])));
    }
}

TARGET_SHANI static void search_shani(job_t *job)
{
    run_search(job, SHANI_LANES, compress_shani, compress_wk_shani, NULL, SHANI_PERM);
}

/* ------------------------------------------------------------------------------------------ */
/* Engine: AVX2, 8 nonces in the 8 lanes of 256-bit vectors                                  */

#define V_ROTR(x, n) _mm256_or_si256(_mm256_srli_epi32((x), (n)), _mm256_slli_epi32((x), 32 - (n)))
#define V_ADD(a, b) _mm256_add_epi32((a), (b))
#define V_XOR(a, b) _mm256_xor_si256((a), (b))
#define V_BSIG0(x) V_XOR(V_XOR(V_ROTR((x), 2), V_ROTR((x), 13)), V_ROTR((x), 22))
#define V_BSIG1(x) V_XOR(V_XOR(V_ROTR((x), 6), V_ROTR((x), 11)), V_ROTR((x), 25))
#define V_SSIG0(x) V_XOR(V_XOR(V_ROTR((x), 7), V_ROTR((x), 18)), _mm256_srli_epi32((x), 3))
#define V_SSIG1(x) V_XOR(V_XOR(V_ROTR((x), 17), V_ROTR((x), 19)), _mm256_srli_epi32((x), 10))

/* One round on v[0..7] = a..h with wk = W[t] + K[t] (8 lanes). */
#define V_ROUND(v, wk)                                                                          \
    do {                                                                                        \
        const __m256i ch_ = V_XOR(v[6], _mm256_and_si256(v[4], V_XOR(v[5], v[6])));             \
        /* Maj(a, b, c) = b ^ ((a ^ b) & (b ^ c)): this round's b ^ c is the last round's     \
           a ^ b, which the compiler reuses across the unrolled rounds (-3.5% instructions). */ \
        const __m256i maj_ = V_XOR(v[1], _mm256_and_si256(V_XOR(v[0], v[1]), V_XOR(v[1], v[2]))); \
        const __m256i t1_ = V_ADD(V_ADD(v[7], V_BSIG1(v[4])), V_ADD(ch_, (wk)));                \
        const __m256i t2_ = V_ADD(V_BSIG0(v[0]), maj_);                                         \
        v[7] = v[6];                                                                            \
        v[6] = v[5];                                                                            \
        v[5] = v[4];                                                                            \
        v[4] = V_ADD(v[3], t1_);                                                                \
        v[3] = v[2];                                                                            \
        v[2] = v[1];                                                                            \
        v[1] = v[0];                                                                            \
        v[0] = V_ADD(t1_, t2_);                                                                 \
    } while (0)

/* out[l] = v + s (the feed-forward), transposed back to one state per lane. */
TARGET_AVX2 static ALWAYS_INLINE void avx2_finish(state_t *out, const __m256i *v,
                                                  const __m256i *s)
{
    uint32_t words[8][8] ALIGNED(32);
    for (int i = 0; i < 8; i++)
        _mm256_store_si256((__m256i *)words[i], V_ADD(v[i], s[i]));
    for (int l = 0; l < 8; l++)
        for (int i = 0; i < 8; i++)
            out[l].w[i] = words[i][l];
}

TARGET_AVX2 static void compress_avx2(state_t *out, const state_t *in, int shared,
                                      const uint8_t *const *blocks, const pre_t *pre)
{
    __m256i s[8], v[8], w[64];
    for (int i = 0; i < 8; i++) {
        if (shared)
            s[i] = _mm256_set1_epi32((int)in[0].w[i]);
        else
            s[i] = _mm256_setr_epi32((int)in[0].w[i], (int)in[1].w[i], (int)in[2].w[i],
                                     (int)in[3].w[i], (int)in[4].w[i], (int)in[5].w[i],
                                     (int)in[6].w[i], (int)in[7].w[i]);
        v[i] = pre ? _mm256_set1_epi32((int)pre->state.w[i]) : s[i];
    }
    /* Words before pre->skip and after pre->last_word are the same in every lane. */
    const int skip = pre ? pre->skip : 0, last_word = pre ? pre->last_word : 15;
    UNROLL
    for (int i = 0; i < 16; i++) {
        if (i < skip || i > last_word)
            w[i] = _mm256_set1_epi32((int)pre->w[i]);
        else
            w[i] = _mm256_setr_epi32(
                (int)load_be32(blocks[0] + 4 * i), (int)load_be32(blocks[1] + 4 * i),
                (int)load_be32(blocks[2] + 4 * i), (int)load_be32(blocks[3] + 4 * i),
                (int)load_be32(blocks[4] + 4 * i), (int)load_be32(blocks[5] + 4 * i),
                (int)load_be32(blocks[6] + 4 * i), (int)load_be32(blocks[7] + 4 * i));
    }
    /* The schedule first, then the rounds: fewer live registers in each, fewer spills
       (-4% instructions, +5% speed on Zen 3). */
    UNROLL
    for (int t = 16; t < 64; t++)
        w[t] = V_ADD(V_ADD(V_SSIG1(w[t - 2]), w[t - 7]), V_ADD(V_SSIG0(w[t - 15]), w[t - 16]));
    for (int t = skip; t < 16; t++)
        V_ROUND(v, V_ADD(w[t], _mm256_set1_epi32((int)K256[t])));
    UNROLL
    for (int t = 16; t < 64; t++)
        V_ROUND(v, V_ADD(w[t], _mm256_set1_epi32((int)K256[t])));
    avx2_finish(out, v, s);
}

/* The rounds over the words before `stable`, from in[0], for compress_avx2 to skip. */
static void prepare_avx2(pre_t *pre, const state_t *in, const uint8_t *block, size_t stable,
                         size_t varying_end)
{
    const int skip = (int)(stable / 4);
    for (int i = 0; i < 16; i++)
        pre->w[i] = load_be32(block + 4 * i);
    pre->state = in[0];
    for (int t = 0; t < skip; t++)
        scalar_round(pre->state.w, pre->w[t] + K256[t]);
    pre->skip = skip;
    pre->last_word = (int)((varying_end - 1) / 4);
}

TARGET_AVX2 static void compress_wk_avx2(state_t *out, const state_t *in, const uint32_t *wk)
{
    __m256i s[8], v[8];
    for (int i = 0; i < 8; i++)
        v[i] = s[i] = _mm256_setr_epi32((int)in[0].w[i], (int)in[1].w[i], (int)in[2].w[i],
                                        (int)in[3].w[i], (int)in[4].w[i], (int)in[5].w[i],
                                        (int)in[6].w[i], (int)in[7].w[i]);
    UNROLL
    for (int t = 0; t < 64; t++)
        V_ROUND(v, _mm256_set1_epi32((int)wk[t]));
    avx2_finish(out, v, s);
}

TARGET_AVX2 static void search_avx2(job_t *job)
{
    run_search(job, 8, compress_avx2, compress_wk_avx2, prepare_avx2, NULL);
}

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

/* Parse (engine, prefix, start, count[, difficulty]) into job and engine; prefix must be
   released by the caller whenever this returns 0 and prefix->obj is set. */
static int parse_job(PyObject *args, int with_difficulty, job_t *job, const engine_t **engine,
                     Py_buffer *prefix)
{
    const char *name;
    PyObject *start_obj, *count_obj;
    int difficulty = 64;
    memset(job, 0, sizeof *job);
    prefix->obj = NULL;
    if (with_difficulty ? !PyArg_ParseTuple(args, "sy*OOi:search", &name, prefix, &start_obj,
                                            &count_obj, &difficulty)
                        : !PyArg_ParseTuple(args, "sy*OO:digests", &name, prefix, &start_obj,
                                            &count_obj))
        return -1;
    *engine = NULL;
    for (int i = 0; i < N_ENGINES; i++)
        if (ENGINES[i].available && strcmp(ENGINES[i].name, name) == 0)
            *engine = &ENGINES[i];
    if (!*engine) {
        PyErr_Format(PyExc_ValueError, "engine %R is unknown or not supported by this CPU",
                     PyTuple_GET_ITEM(args, 0));
        return -1;
    }
    if (!PyLong_Check(start_obj) || !PyLong_Check(count_obj)) {
        PyErr_SetString(PyExc_TypeError, "start and count must be integers");
        return -1;
    }
    const unsigned long long start = PyLong_AsUnsignedLongLong(start_obj);
    if (start == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    const unsigned long long count = PyLong_AsUnsignedLongLong(count_obj);
    if (count == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    if (count < 1) {
        PyErr_SetString(PyExc_ValueError, "count must be >= 1");
        return -1;
    }
    if (count - 1 > UINT64_MAX - start) {
        PyErr_SetString(PyExc_OverflowError, "start + count - 1 must be at most 2**64 - 1");
        return -1;
    }
    if (difficulty < 1 || difficulty > 64) {
        PyErr_SetString(PyExc_ValueError, "difficulty must be 1..64");
        return -1;
    }
    job->prefix = (const uint8_t *)prefix->buf;
    job->plen = (size_t)prefix->len;
    job->start = start;
    job->count = count;
    job->difficulty = difficulty;
    return 0;
}

static PyObject *py_search(PyObject *self, PyObject *args)
{
    (void)self;
    job_t job;
    const engine_t *engine;
    Py_buffer prefix;
    PyObject *result = NULL;
    if (parse_job(args, 1, &job, &engine, &prefix) == 0) {
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
    }
    if (prefix.obj)
        PyBuffer_Release(&prefix);
    return result;
}

#define MAX_DIGESTS (1 << 22)

static PyObject *py_digests(PyObject *self, PyObject *args)
{
    (void)self;
    job_t job;
    const engine_t *engine;
    Py_buffer prefix;
    PyObject *result = NULL;
    if (parse_job(args, 0, &job, &engine, &prefix) == 0) {
        if (job.count > MAX_DIGESTS) {
            PyErr_Format(PyExc_ValueError, "count must be at most %d", MAX_DIGESTS);
        } else if ((result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(32 * job.count)))) {
            job.digests = (uint8_t *)PyBytes_AS_STRING(result);
            Py_BEGIN_ALLOW_THREADS
            engine->search(&job); /* difficulty 64: never stops early */
            Py_END_ALLOW_THREADS
        }
    }
    if (prefix.obj)
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
    {"digests", py_digests, METH_VARARGS,
     "digests(engine, prefix, start, count) -> bytes\n\n"
     "The 32-byte digests of every nonce in [start, start + count), concatenated, computed "
     "by the same search loop (for tests). count is at most 2**22."},
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
