/*
 * The SHA-256 proof-of-work search core: plain C, no Python.h, so that a known-answer driver
 * (kat.c) builds with any C compiler and runs on any CPU, emulated or not.
 *
 * A search hashes SHA-256(prefix + decimal(n)) for the nonces n = start .. start + count - 1
 * in increasing order, stops at the first one whose hex digest starts with at least
 * `difficulty` zeros, and reports the earliest nonce with the most leading zeros among those
 * hashed. The order of nonces within a job (its layout) is decided by the caller
 * (pow/layout.py); this core only hashes ranges of consecutive nonces, as fast as it can.
 */
#ifndef POW_SHA256_SEARCH_H
#define POW_SHA256_SEARCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    /* inputs */
    const uint8_t *prefix;
    size_t plen;
    uint64_t start, count; /* count >= 1 and start + count - 1 <= UINT64_MAX */
    int difficulty;        /* 1..64 */
    uint8_t *digests;      /* if not NULL: the 32-byte digest of every nonce hashed, in order */
    /* outputs */
    int found;             /* a nonce met the difficulty: it is best_nonce */
    uint64_t hashes;       /* nonces hashed: count, or up to and including the proof */
    uint64_t best_nonce;   /* earliest nonce with the most leading zeros */
    int best_zeros;
    uint32_t best_h[8];    /* its digest as 8 big-endian words */
} pow_search_t;

/* Engines compiled in, fastest first; whether this CPU can run engine i is checked at run time
   (cpuid on x86-64, the HWCAP / OS feature flags on arm64). */
int pow_engine_count(void);
const char *pow_engine_name(int engine);
int pow_engine_available(int engine);
/* The index of the engine called `name` if this CPU can run it, else -1. */
int pow_engine_find(const char *name);

/* Runs a search with an available engine (the caller checks the arguments). */
void pow_search(int engine, pow_search_t *job);

/* SHA-256 rounds the engine spends per hash, on average, on nonces of `digits` digits after a
   prefix of `plen` bytes: what is left once midstates and constant rounds are hoisted out
   (for benchmarks and the README; the full-block midstate of the prefix is not counted). */
double pow_rounds_per_hash(int engine, size_t plen, int digits);

#ifdef __cplusplus
}
#endif

#endif
