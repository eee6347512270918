/*
 * SHA-256 in the 32-bit lanes of vectors: the body of an engine that hashes LANES nonces at
 * once, one per lane, included by sha256_search.c once per vector width (and nowhere else).
 * The includer defines:
 *   LANES                 lanes per vector (8: AVX2, 4: SSE)
 *   VEC                   the vector type
 *   LANES_FN(name)        the name of this width's copy of a function
 *   TARGET_LANES          its target attribute
 *   V_ADD V_XOR V_AND V_OR V_SRL V_SLL V_SET1 V_STORE V_LOAD, V_LANES(E) (a vector of E(0) ..
 *   E(LANES - 1)) and V_BELOW(x, y) (the lanes where x < y, signed, as bits)
 * and finds V_ROUND, V_SSIG0/1 and V_PLAN_WK already defined on top of those.
 *
 * The vectors hold words in standard order; `perm` (an engine's state order, NULL: standard)
 * is taken only where states come in and go out, so that the SHA-NI hybrid can use these on
 * its states.
 */

/* Word t of the LANES blocks. */
#define LANES_WORD_(l) (int)load_be32(lanes[l].block + 4 * t)
TARGET_LANES static ALWAYS_INLINE VEC LANES_FN(word)(const lane_t *lanes, int t)
{
    return V_LANES(LANES_WORD_);
}
#undef LANES_WORD_

/* out[l] = v + s (the feed-forward), transposed back to one state per lane; returns the
   lanes whose first word is below threshold. */
TARGET_LANES static ALWAYS_INLINE unsigned LANES_FN(finish)(state_t *out, const VEC *v,
                                                            const VEC *s, uint64_t threshold,
                                                            const int *perm)
{
    ALIGNAS(32) uint32_t words[8][LANES];
    for (int i = 0; i < 8; i++)
        V_STORE(words[i], V_ADD(v[i], s[i]));
    for (int l = 0; l < LANES; l++)
        for (int i = 0; i < 8; i++)
            out[l].w[PERM(perm, i)] = words[i][l];
    if (threshold > UINT32_MAX)
        return (1u << LANES) - 1;
    const VEC flip = V_SET1(0x80000000u); /* unsigned compare as signed */
    return V_BELOW(V_XOR(V_LOAD(words[0]), flip), V_XOR(V_SET1((uint32_t)threshold), flip));
}

#define LANES_IN_(l) (int)in[l].w[k]
TARGET_LANES static ALWAYS_INLINE void LANES_FN(input)(VEC *s, const state_t *in, int shared,
                                                      const int *perm)
{
    for (int i = 0; i < 8; i++) {
        const int k = PERM(perm, i);
        s[i] = shared ? V_SET1(in[0].w[k]) : V_LANES(LANES_IN_);
    }
}
#undef LANES_IN_

TARGET_LANES static ALWAYS_INLINE unsigned LANES_FN(full)(state_t *out, const state_t *in,
                                                         int shared, const lane_t *lanes,
                                                         uint64_t threshold, const int *perm)
{
    VEC s[8], v[8], w[64];
    LANES_FN(input)(s, in, shared, perm);
    for (int i = 0; i < 8; i++)
        v[i] = s[i];
    UNROLL
    for (int t = 0; t < 16; t++)
        w[t] = LANES_FN(word)(lanes, t);
    /* The schedule first, then the rounds: fewer live registers in each, fewer spills
       (-4% instructions, +5% speed on Zen 3). */
    UNROLL
    for (int t = 16; t < 64; t++)
        w[t] = V_ADD(V_ADD(V_SSIG1(w[t - 2]), w[t - 7]), V_ADD(V_SSIG0(w[t - 15]), w[t - 16]));
    UNROLL
    for (int t = 0; t < 64; t++)
        V_ROUND(v, V_ADD(w[t], V_SET1(K256[t])));
    return LANES_FN(finish)(out, v, s, threshold, perm);
}

/* With a plan: the window's words of the lanes. */
#define LANES_WIN_(l) (int)lanes[l].w[k]
TARGET_LANES static ALWAYS_INLINE void LANES_FN(window)(VEC *w, const lane_t *lanes,
                                                       const plan_t *p)
{
    for (int k = 0; k < 2; k++)
        w[k ? p->j1 : p->j0] = V_LANES(LANES_WIN_);
}
#undef LANES_WIN_

/* With a plan: schedule word t >= 16, from the terms that depend on the window only (words
   before it that vary must be there). */
TARGET_LANES static ALWAYS_INLINE void LANES_FN(plan_word)(VEC *w, const plan_t *p, int t)
{
    if (t >= PLAN_TERMS_FROM) {
        w[t] = V_ADD(V_ADD(V_SSIG1(w[t - 2]), w[t - 7]), V_ADD(V_SSIG0(w[t - 15]), w[t - 16]));
        return;
    }
    if (t < PLAN_VAR_FROM && !((p->var >> t) & 1))
        return;
    const unsigned terms = p->terms[t];
    VEC x = V_SET1(p->wk[t]);
    if (terms & 1)
        x = V_ADD(x, w[t - 16]);
    if (terms & 2)
        x = V_ADD(x, V_SSIG0(w[t - 15]));
    if (terms & 4)
        x = V_ADD(x, w[t - 7]);
    if (terms & 8)
        x = V_ADD(x, V_SSIG1(w[t - 2]));
    w[t] = x;
}

/* The plan's state at round plan->skip, in every lane, and that round if it is the first with
   a window word (its T1 without W and its T2 are in the plan); returns the next round. */
TARGET_LANES static ALWAYS_INLINE int LANES_FN(plan_state)(VEC *v, const VEC *w, const plan_t *p,
                                                          const int *perm)
{
    for (int i = 0; i < 8; i++)
        v[i] = V_SET1(p->state.w[PERM(perm, i)]);
    int t = p->skip;
    if (t == p->j0) {
        const VEC t1 = V_ADD(V_SET1(p->t1), w[t]);
        v[7] = v[6];
        v[6] = v[5];
        v[5] = v[4];
        v[4] = V_ADD(v[3], t1);
        v[3] = v[2];
        v[2] = v[1];
        v[1] = v[0];
        v[0] = V_ADD(t1, V_SET1(p->t2));
        t++;
    }
    return t;
}

/* With a plan (or without, p == NULL): only the schedule terms that depend on the window, and
   the rounds from the first window word on (that round itself half done in the plan). */
TARGET_LANES static ALWAYS_INLINE unsigned LANES_FN(plan)(state_t *out, const state_t *in,
                                                         int shared, const lane_t *lanes,
                                                         const plan_t *p, int from_state,
                                                         uint64_t threshold, const int *perm)
{
    if (!p)
        return LANES_FN(full)(out, in, shared, lanes, threshold, perm);
    VEC s[8], v[8], w[64];
    LANES_FN(input)(s, in, shared, perm);
    LANES_FN(window)(w, lanes, p);
    UNROLL
    for (int t = 16; t < 64; t++)
        LANES_FN(plan_word)(w, p, t);
    int t = 0;
    if (from_state) {
        t = LANES_FN(plan_state)(v, w, p, perm);
    } else {
        for (int i = 0; i < 8; i++)
            v[i] = s[i];
    }
    for (; t < 16; t++)
        V_ROUND(v, V_PLAN_WK(w, p, t));
    UNROLL
    for (int r = 16; r < 64; r++)
        V_ROUND(v, V_PLAN_WK(w, p, r));
    return LANES_FN(finish)(out, v, s, threshold, perm);
}

/* A block that is the same in every lane, with its schedule given: only the rounds. */
TARGET_LANES static ALWAYS_INLINE unsigned LANES_FN(wk)(state_t *out, const state_t *in,
                                                       const uint32_t *wk, uint64_t threshold,
                                                       const int *perm)
{
    VEC s[8], v[8];
    LANES_FN(input)(s, in, 0, perm);
    for (int i = 0; i < 8; i++)
        v[i] = s[i];
    UNROLL
    for (int t = 0; t < 64; t++)
        V_ROUND(v, V_SET1(wk[t]));
    return LANES_FN(finish)(out, v, s, threshold, perm);
}
