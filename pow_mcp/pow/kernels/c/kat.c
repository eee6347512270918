/*
 * Known-answer driver for the search core: builds with any C compiler, needs no Python, and
 * runs wherever the target runs (under qemu for arm64: `make test-arm64`).
 *
 * Every engine this CPU can run is checked against a textbook SHA-256 written here (itself
 * checked on the FIPS 180-2 vectors): the digests of runs of nonces for every prefix length
 * from 0 to 200 bytes (messages ending at or across the padding boundaries 55/56, 63/64,
 * 119/120), runs across every digit-count change up to 2**64 - 1 and the 2**53 bound, runs
 * long enough to carry out of every window, and searches: the first proof, the hash count,
 * and the best hash at 1..11 leading zeros (nonces planted with 8 and 9).
 *
 * Usage: kat [--require ENGINE]...   Prints one line per engine with the path that ran;
 * exits 1 on any mismatch, or if a required engine cannot run here.
 */

#include "sha256_search.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Reference SHA-256, as plain as it gets                                                     */

static uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static void ref_block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64], a[8];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 |
               (uint32_t)p[4 * t + 2] << 8 | p[4 * t + 3];
    for (int t = 16; t < 64; t++) {
        const uint32_t s0 = ror(w[t - 15], 7) ^ ror(w[t - 15], 18) ^ (w[t - 15] >> 3);
        const uint32_t s1 = ror(w[t - 2], 17) ^ ror(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    memcpy(a, h, sizeof a);
    for (int t = 0; t < 64; t++) {
        const uint32_t t1 = a[7] + (ror(a[4], 6) ^ ror(a[4], 11) ^ ror(a[4], 25)) +
                            ((a[4] & a[5]) ^ (~a[4] & a[6])) + K[t] + w[t];
        const uint32_t t2 = (ror(a[0], 2) ^ ror(a[0], 13) ^ ror(a[0], 22)) +
                            ((a[0] & a[1]) ^ (a[0] & a[2]) ^ (a[1] & a[2]));
        memmove(a + 1, a, 7 * sizeof a[0]);
        a[4] += t1;
        a[0] = t1 + t2;
    }
    for (int i = 0; i < 8; i++)
        h[i] += a[i];
}

static void ref_sha256(const uint8_t *msg, size_t len, uint8_t out[32])
{
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    uint8_t block[64];
    size_t off = 0;
    for (; off + 64 <= len; off += 64)
        ref_block(h, msg + off);
    const size_t rest = len - off;
    memset(block, 0, sizeof block);
    memcpy(block, msg + off, rest);
    block[rest] = 0x80;
    if (rest + 9 > 64) {
        ref_block(h, block);
        memset(block, 0, sizeof block);
    }
    const uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        block[63 - i] = (uint8_t)(bits >> (8 * i));
    ref_block(h, block);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++)
            out[4 * i + j] = (uint8_t)(h[i] >> (24 - 8 * j));
}

/* prefix + decimal(nonce) hashed by the reference. */
static void ref_nonce(const uint8_t *prefix, size_t plen, uint64_t nonce, uint8_t out[32])
{
    uint8_t msg[256 + 20];
    char digits[21];
    const int nd = snprintf(digits, sizeof digits, "%llu", (unsigned long long)nonce);
    memcpy(msg, prefix, plen);
    memcpy(msg + plen, digits, (size_t)nd);
    ref_sha256(msg, plen + (size_t)nd, out);
}

static int zeros_of(const uint8_t d[32])
{
    int z = 0;
    for (int i = 0; i < 32; i++) {
        if (d[i] >> 4)
            return z;
        z++;
        if (d[i] & 15)
            return z;
        z++;
    }
    return z;
}

/* ------------------------------------------------------------------------------------------ */
/* Checks: each vector's answer is computed once, then every engine that can run is asked    */

static int engines[16], n_engines;
static int failures[16];
static long checks;

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void fail(int e, const char *what, size_t plen, uint64_t start, uint64_t n)
{
    if (failures[e]++ < 10)
        fprintf(stderr, "MISMATCH %s: %s, %zu-byte prefix, nonces from %llu (%llu)\n",
                pow_engine_name(engines[e]), what, plen, (unsigned long long)start,
                (unsigned long long)n);
}

/* Every digest of nonces start .. start+n-1 (at most 4096, not past 2**64 - 1). */
static void check_digests(const uint8_t *prefix, size_t plen, uint64_t start, uint64_t n)
{
    static uint8_t want[32 * 4096], got[32 * 4096];
    if (n > 4096)
        n = 4096;
    if (start + (n - 1) < start)
        n = UINT64_MAX - start + 1;
    for (uint64_t i = 0; i < n; i++)
        ref_nonce(prefix, plen, start + i, want + 32 * i);
    checks++;
    for (int e = 0; e < n_engines; e++) {
        pow_search_t job;
        memset(&job, 0, sizeof job);
        job.prefix = prefix;
        job.plen = plen;
        job.start = start;
        job.count = n;
        job.difficulty = 64;
        job.digests = got;
        pow_search(engines[e], &job);
        for (uint64_t i = 0; i < n; i++)
            if (memcmp(got + 32 * i, want + 32 * i, 32) != 0) {
                fail(e, "digest", plen, start, i);
                break;
            }
        if (job.hashes != n)
            fail(e, "hash count", plen, start, n);
    }
}

/* A search: the first proof, hashes, best nonce, zeros and hash. */
static void check_search(const uint8_t *prefix, size_t plen, uint64_t start, uint64_t n,
                         int difficulty)
{
    uint8_t d[32], best[32];
    int best_zeros = -1, found = 0;
    uint64_t best_nonce = start, hashes = n;
    for (uint64_t i = 0; i < n; i++) {
        ref_nonce(prefix, plen, start + i, d);
        const int z = zeros_of(d);
        if (z > best_zeros) {
            best_zeros = z;
            best_nonce = start + i;
            memcpy(best, d, 32);
        }
        if (z >= difficulty) {
            found = 1;
            hashes = i + 1;
            break;
        }
    }
    checks++;
    for (int e = 0; e < n_engines; e++) {
        pow_search_t job;
        memset(&job, 0, sizeof job);
        job.prefix = prefix;
        job.plen = plen;
        job.start = start;
        job.count = n;
        job.difficulty = difficulty;
        pow_search(engines[e], &job);
        uint8_t got[32];
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 4; j++)
                got[4 * i + j] = (uint8_t)(job.best_h[i] >> (24 - 8 * j));
        if (job.found != found || job.hashes != hashes || job.best_nonce != best_nonce ||
            job.best_zeros != best_zeros || memcmp(got, best, 32) != 0)
            fail(e, "search", plen, start, (uint64_t)difficulty);
    }
}

static void check_all(void)
{
    uint8_t prefix[256];
    static const uint64_t P53 = (1ULL << 53) - 1;
    check_digests((const uint8_t *)"abc", 3, 0, 10);

    for (size_t plen = 0; plen <= 200; plen++) {
        for (size_t i = 0; i < plen; i++)
            prefix[i] = (uint8_t)rng();
        /* Small nonces, every digit-count change, the 2**53 bound, and 2**64 - 1. */
        check_digests(prefix, plen, 0, 120);
        for (int k = 1; k < 20; k++) {
            uint64_t p = 1;
            for (int j = 0; j < k; j++)
                p *= 10;
            check_digests(prefix, plen, p - 1 - rng() % 12, 1 + rng() % 24);
        }
        check_digests(prefix, plen, P53 - 40, 41);
        check_digests(prefix, plen, UINT64_MAX - 20, 21);
        /* Runs long enough to carry out of every window (2 to 6 digits), at 10 and 16
           digits. */
        check_digests(prefix, plen, 1000000000ULL + rng() % 8999990000ULL, 1100);
        check_digests(prefix, plen, 1000000000000000ULL + rng() % 8000000000000000ULL, 1100);
        check_digests(prefix, plen, 9999999999998999ULL, 1100);
        check_search(prefix, plen, rng() % 100000, 300, 1 + (int)(rng() % 3));
    }
    /* Messages of exactly 55, 56, 63, 64, 119 and 120 bytes with 16-digit nonces, and runs
       across a carry into the first of two blocks. */
    static const size_t lengths[] = {39, 40, 47, 48, 103, 104};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        memset(prefix, 'p', lengths[i]);
        check_digests(prefix, lengths[i], 1234567890123000ULL, 2000);
        check_search(prefix, lengths[i], 1234567890120000ULL, 3000, 3);
    }
    for (size_t rest = 44; rest < 64; rest++) {
        memset(prefix, 'q', rest);
        check_digests(prefix, rest, 1234567889ULL - rng() % 10, 1500);
        check_digests(prefix, rest, 9999998990ULL, 1100);
    }
    /* Leading zeros: nonces planted with 8 and 9 (found once, checked with the reference). */
    static const char planted[] = "pow-mcp-zeros-";
    static const uint64_t planted_nonce[] = {1255615774ULL, 8170912913ULL};
    for (int i = 0; i < 2; i++)
        for (int difficulty = 1; difficulty <= 11; difficulty++)
            check_search((const uint8_t *)planted, strlen(planted), planted_nonce[i] - 1500, 3000,
                         difficulty);
    memcpy(prefix, "5-42BUILD1000NONCE", 18);
    for (int difficulty = 1; difficulty <= 4; difficulty++)
        check_search(prefix, 18, 1000000, 40000, difficulty);
}

int main(int argc, char **argv)
{
    /* The reference against FIPS 180-2. */
    static const struct {
        const char *msg;
        const char *hex;
    } fips[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    for (size_t i = 0; i < sizeof fips / sizeof fips[0]; i++) {
        uint8_t d[32];
        char hex[65];
        ref_sha256((const uint8_t *)fips[i].msg, strlen(fips[i].msg), d);
        for (int j = 0; j < 32; j++)
            snprintf(hex + 2 * j, 3, "%02x", d[j]);
        if (strcmp(hex, fips[i].hex) != 0) {
            fprintf(stderr, "the reference SHA-256 is wrong on FIPS vector %zu\n", i);
            return 1;
        }
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--require") == 0 && i + 1 < argc) {
            if (pow_engine_find(argv[++i]) < 0) {
                fprintf(stderr, "required engine %s cannot run here\n", argv[i]);
                return 1;
            }
        } else {
            fprintf(stderr, "usage: %s [--require ENGINE]...\n", argv[0]);
            return 2;
        }
    }
    for (int e = 0; e < pow_engine_count() && n_engines < 16; e++) {
        if (pow_engine_available(e))
            engines[n_engines++] = e;
        else
            printf("engine %-10s  not supported by this CPU\n", pow_engine_name(e));
    }
    if (!n_engines)
        return 1;
    check_all();
    int failed = 0;
    for (int e = 0; e < n_engines; e++) {
        printf("engine %-10s  %s (%ld known-answer checks)\n", pow_engine_name(engines[e]),
               failures[e] ? "MISMATCH" : "ok", checks);
        failed |= failures[e] != 0;
    }
    printf("%s\n", failed ? "FAILED" : "all engines match the reference");
    return failed;
}
