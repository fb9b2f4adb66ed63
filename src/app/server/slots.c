// The engine thread: parallel slots with continuous batching.
//
// Each slot is one KV-cache sequence (seq id = slot index) with at most
// n_ctx / n_slots cells. Every step puts the next token of each generating
// slot and a chunk of each slot still reading its prompt into one
// engine_decode batch, then samples each slot from its own logits row. A slot
// keeps its cached tokens after a task, so a later request sharing a prefix
// (a chat's next turn) only evaluates the new tail.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "json_constrain.h"
#include "server.h"

struct slot {
    int id;                  // KV sequence id
    struct task *task;       // NULL: idle
    int32_t *cache;          // [n_ctx_slot] tokens whose keys/values are cached, at positions 0..n_cache-1
    int32_t n_cache;
    int32_t n_exact;         // leading cache tokens read as prompt rows (kern_matmul_rows): only
                             // they are reused, since they hold what a fresh prompt would (a
                             // prompt's last token and a reply's were generation rows)
    int32_t n_prompt_done;   // prompt tokens of the task in the cache
    bool generating;         // the prompt is done; next_token waits to be decoded
    int32_t next_token;
    int32_t batch_i;         // this step's batch entry with the slot's logits, or -1
    int32_t chunk;           // prompt tokens put in this step's batch
    struct sampler smp;
    bool have_smp;
    struct tok_stream ts;
    size_t n_emitted;        // bytes of task->text handed to the client
    double t_start, t_gen_start;
    uint64_t last_used;      // for least-recently-used slot choice
    struct json_fsm json;    // response_format json_object state
};

// Engine-thread scratch.
static struct engine_batch g_batch;
static float *g_logits_copy;  // [n_vocab] logits with masked tokens
static int32_t *g_eog_ids;    // end-of-generation token ids (masked for ignore_eos)
static int32_t g_n_eog;
static char *g_piece;         // detokenizer output
static size_t g_piece_cap;
static uint64_t g_use_clock;
static struct json_token_table *g_json_tokens;

double server_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int sbuf_add(struct sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

void sbuf_free(struct sbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

void task_free(struct task *t) {
    if (!t) return;
    free(t->prompt);
    for (int i = 0; i < t->n_stop; i++) free(t->stop[i]);
    for (int i = 0; i < t->n_embed_inputs; i++) free(t->embed_inputs[i]);
    free(t->embed_inputs);
    free(t->embed_lens);
    free(t->embeddings);
    free(t->gen_tokens);
    sbuf_free(&t->text);
    sbuf_free(&t->pending);
    free(t);
}

int slots_init(struct server *s, llm_err *err) {
    const int n = s->cfg.n_slots;
    s->slots = calloc((size_t)n, sizeof *s->slots);
    if (!s->slots) return err_set(err, "out of memory for %d slots", n);
    for (int i = 0; i < n; i++) {
        s->slots[i].id = i;
        s->slots[i].cache = malloc((size_t)s->n_ctx_slot * sizeof(int32_t));
        if (!s->slots[i].cache) return err_set(err, "out of memory for slot caches");
    }
    const int32_t cap = s->cfg.engine.n_batch + n;
    if (engine_batch_init(&g_batch, cap, err)) return -1;
    g_logits_copy = malloc((size_t)s->n_vocab * sizeof(float));
    g_eog_ids = malloc((size_t)s->n_vocab * sizeof(int32_t));
    g_piece_cap = 3 * (tok_max_piece(s->vocab) + 8);
    g_piece = malloc(g_piece_cap);
    if (!g_logits_copy || !g_eog_ids || !g_piece) return err_set(err, "out of memory");
    const int n_tok = tok_n_vocab(s->vocab);
    for (int32_t id = 0; id < n_tok; id++)
        if (tok_is_eog(s->vocab, id)) g_eog_ids[g_n_eog++] = id;
    g_json_tokens = json_token_table_new(s->vocab, s->n_vocab, err);
    if (!g_json_tokens) return -1;
    return 0;
}

void slots_free(struct server *s) {
    if (s->slots) {
        for (int i = 0; i < s->cfg.n_slots; i++) {
            free(s->slots[i].cache);
            if (s->slots[i].have_smp) sampler_free(&s->slots[i].smp);
        }
        free(s->slots);
        s->slots = NULL;
    }
    engine_batch_free(&g_batch);
    free(g_logits_copy);
    free(g_eog_ids);
    free(g_piece);
    json_token_table_free(g_json_tokens);
}

// ---- hand-over to the HTTP thread ------------------------------------------

static void notify_locked(struct server *s, struct task *t) {
    if (t->in_notify) return;
    t->in_notify = true;
    const bool was_empty = s->notify_head == NULL;
    t->next_notify = s->notify_head;
    s->notify_head = t;
    if (was_empty) {
        // The pipe is non-blocking: if it is full, a wake-up is already pending.
        ssize_t w = write(s->notify_fd[1], "x", 1);
        (void)w;
    }
}

int server_submit(struct server *s, struct task *t) {
    pthread_mutex_lock(&s->mu);
    int rc = -1;
    if (!s->stopping && s->n_queued < s->cfg.max_queue + (s->cfg.n_slots - s->n_busy)) {
        t->next_queue = NULL;
        if (s->queue_tail) s->queue_tail->next_queue = t;
        else s->queue_head = t;
        s->queue_tail = t;
        s->n_queued++;
        s->m.requests++;
        pthread_cond_signal(&s->wake);
        rc = 0;
    } else if (!s->stopping) {
        s->m.rejected_busy++;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void server_cancel(struct server *s, struct task *t) {
    atomic_store(&t->cancel, true);
    pthread_mutex_lock(&s->mu);
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
}

// Gives the client the text from n_emitted up to `upto` (streaming only).
static void emit(struct server *s, struct slot *sl, size_t upto) {
    struct task *t = sl->task;
    if (upto <= sl->n_emitted) return;
    if (t->stream) {
        pthread_mutex_lock(&s->mu);
        if (sbuf_add(&t->pending, t->text.p + sl->n_emitted, upto - sl->n_emitted) == 0) notify_locked(s, t);
        pthread_mutex_unlock(&s->mu);
    }
    sl->n_emitted = upto;
}

static void task_done(struct server *s, struct task *t) {
    pthread_mutex_lock(&s->mu);
    t->done = true;
    notify_locked(s, t);
    pthread_mutex_unlock(&s->mu);
}

static void task_fail(struct task *t, int status, const char *msg) {
    t->finish = FINISH_ERROR;
    t->err_status = status;
    snprintf(t->err_msg, sizeof t->err_msg, "%s", msg);
}

// Ends the slot's task: releases any held-back text, records timings and
// frees the slot (its cache stays for prompt re-use).
static void finish(struct server *s, struct slot *sl, enum finish_reason why) {
    struct task *t = sl->task;
    const double now = server_now_ms();
    if (why != FINISH_STOP_WORD && why != FINISH_ERROR) {
        int n = tok_stream_flush(&sl->ts, g_piece, g_piece_cap);
        if (n > 0 && sbuf_add(&t->text, g_piece, (size_t)n)) {
            task_fail(t, 500, "out of memory");
            why = FINISH_ERROR;
        }
    }
    if (why != FINISH_ERROR) emit(s, sl, t->text.n);
    if (t->finish != FINISH_ERROR) t->finish = why;
    if (sl->generating) t->t_gen_ms = now - sl->t_gen_start;
    else t->t_prompt_ms = now - sl->t_start;
    if (sl->have_smp) sampler_free(&sl->smp);
    sl->have_smp = false;
    sl->task = NULL;
    sl->generating = false;
    sl->last_used = ++g_use_clock;
    pthread_mutex_lock(&s->mu);
    s->n_busy--;
    s->m.prompt_tokens += (uint64_t)(t->n_prompt - t->n_cached);
    s->m.cached_tokens += (uint64_t)t->n_cached;
    s->m.gen_tokens += (uint64_t)t->n_gen;
    s->m.prompt_ms += t->t_prompt_ms;
    s->m.gen_ms += t->t_gen_ms;
    if (t->finish == FINISH_ERROR) s->m.errors++;
    pthread_mutex_unlock(&s->mu);
    task_done(s, t);
}

// ---- starting a task -------------------------------------------------------

static int32_t common_prefix(const int32_t *a, int32_t na, const int32_t *b, int32_t nb) {
    int32_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

// Cached tokens of slot sl that a prompt can reuse: the shared prefix, within the exact part.
static int32_t reusable(const struct slot *sl, const struct task *t) {
    if (!t->cache_prompt) return 0;
    const int32_t len = common_prefix(sl->cache, sl->n_cache, t->prompt, t->n_prompt);
    return len < sl->n_exact ? len : sl->n_exact;
}

// An idle slot: the one whose cache shares the longest prefix with the prompt
// if that prefix is worth keeping, else the least recently used one (which
// keeps the other slots' caches for their conversations).
static struct slot *pick_slot(struct server *s, const struct task *t) {
    struct slot *best = NULL, *lru = NULL;
    int32_t best_len = 0;
    for (int i = 0; i < s->cfg.n_slots; i++) {
        struct slot *sl = &s->slots[i];
        if (sl->task) continue;
        if (!lru || sl->last_used < lru->last_used) lru = sl;
        const int32_t len = reusable(sl, t);
        if (len > best_len) best = sl, best_len = len;
    }
    if (best && (best_len >= 32 || 2 * best_len >= t->n_prompt)) return best;
    return lru;
}

static void start_task(struct server *s, struct task *t) {
    struct slot *sl = pick_slot(s, t);
    llm_err err;
    sl->task = t;
    sl->t_start = server_now_ms();
    t->slot_id = sl->id;
    int32_t keep = reusable(sl, t);
    if (keep >= t->n_prompt) keep = t->n_prompt - 1; // the last prompt token is evaluated again for its logits
    engine_seq_rm(s->engine, sl->id, keep, -1);
    sl->n_cache = sl->n_exact = keep;
    sl->n_prompt_done = keep;
    t->n_cached = keep;
    sl->generating = false;
    sl->n_emitted = 0;
    tok_stream_init(&sl->ts, false);
    if (t->json_object) json_fsm_init(&sl->json);
    if (sampler_init(&sl->smp, &t->sp, s->n_vocab, &err)) {
        task_fail(t, 400, err.msg);
        finish(s, sl, FINISH_ERROR);
        return;
    }
    sl->have_smp = true;
    for (int32_t i = 0; i < t->n_prompt; i++) sampler_accept(&sl->smp, t->prompt[i]);
}

static void run_embed(struct server *s, struct task *t) {
    llm_err err;
    const int64_t n_embd = engine_n_embd(s->engine);
    t->n_embd = n_embd;
    t->embeddings = malloc((size_t)t->n_embed_inputs * (size_t)n_embd * sizeof(float));
    if (!t->embeddings) {
        task_fail(t, 500, "out of memory for embeddings");
        task_done(s, t);
        return;
    }
    const double t0 = server_now_ms();
    for (int i = 0; i < t->n_embed_inputs; i++) {
        if (atomic_load(&t->cancel)) {
            t->finish = FINISH_CANCELLED;
            break;
        }
        if (engine_embed(s->engine, t->embed_inputs[i], t->embed_lens[i], t->embeddings + (size_t)i * (size_t)n_embd,
                         t->embed_normalize, &err)) {
            task_fail(t, 500, err.msg);
            break;
        }
    }
    t->t_prompt_ms = server_now_ms() - t0;
    if (!engine_is_encoder(s->engine))
        for (int i = 0; i < s->cfg.n_slots; i++) s->slots[i].n_cache = s->slots[i].n_exact = 0; // the cache was cleared
    if (t->finish == FINISH_NONE) t->finish = FINISH_STOP_EOG;
    task_done(s, t);
}

// ---- one generated token ---------------------------------------------------

// Bytes at the end of text[from..n) that could be the start of a stop string
// and so must wait for the next token before they are shown.
static size_t stop_holdback(const struct task *t, const char *text, size_t n, size_t from) {
    size_t hold = 0;
    for (int i = 0; i < t->n_stop; i++) {
        const size_t len = strlen(t->stop[i]);
        for (size_t k = len - 1; k > hold; k--)
            if (k <= n - from && memcmp(text + n - k, t->stop[i], k) == 0) {
                hold = k;
                break;
            }
    }
    return hold;
}

// Earliest occurrence of any stop string that ends after `from`, or -1.
static long find_stop(const struct task *t, const char *text, size_t n, size_t from, int *which) {
    long best = -1;
    for (int i = 0; i < t->n_stop; i++) {
        const size_t len = strlen(t->stop[i]);
        const size_t start = from >= len ? from - len + 1 : 0;
        if (start >= n) continue;
        const char *hit = memmem(text + start, n - start, t->stop[i], len);
        if (hit && (best < 0 || hit - text < best)) best = hit - text, *which = i;
    }
    return best;
}

// Picks the next token of a slot from its logits, with the masks the task
// asks for; -1 if the masks leave no token.
static int32_t sample_token(struct server *s, struct slot *sl, const float *logits) {
    struct task *t = sl->task;
    if (!t->ignore_eos && !t->json_object) return sampler_sample(&sl->smp, logits);
    memcpy(g_logits_copy, logits, (size_t)s->n_vocab * sizeof(float));
    if (t->ignore_eos)
        for (int32_t i = 0; i < g_n_eog; i++) g_logits_copy[g_eog_ids[i]] = -INFINITY;
    if (t->json_object) {
        // Sample freely first; only if the token breaks the JSON, mask every
        // token that would and draw again (the same distribution as masking first).
        const int32_t tok = sampler_sample(&sl->smp, g_logits_copy);
        if (json_token_ok(g_json_tokens, &sl->json, tok)) return tok;
        if (json_mask_logits(g_json_tokens, &sl->json, g_logits_copy, s->n_vocab) == 0) return -1;
    }
    return sampler_sample(&sl->smp, g_logits_copy);
}

static void on_logits(struct server *s, struct slot *sl, const float *logits) {
    struct task *t = sl->task;
    if (t->n_predict <= 0) { // n_predict 0: the prompt is only evaluated (cached)
        finish(s, sl, FINISH_LENGTH);
        return;
    }
    const int32_t tok = sample_token(s, sl, logits);
    if (tok < 0 || (tok_is_eog(s->vocab, tok) && !t->ignore_eos)) {
        finish(s, sl, FINISH_STOP_EOG);
        return;
    }
    if (t->json_object) json_fsm_feed_token(g_json_tokens, &sl->json, tok);
    sampler_accept(&sl->smp, tok);
    if (t->n_gen == t->gen_cap) {
        int32_t cap = t->gen_cap ? 2 * t->gen_cap : 64;
        int32_t *g = realloc(t->gen_tokens, (size_t)cap * sizeof *g);
        if (!g) {
            task_fail(t, 500, "out of memory");
            finish(s, sl, FINISH_ERROR);
            return;
        }
        t->gen_tokens = g;
        t->gen_cap = cap;
    }
    t->gen_tokens[t->n_gen++] = tok;
    const size_t before = t->text.n;
    int n = tok_stream_push(s->vocab, &sl->ts, tok, g_piece, g_piece_cap);
    if (n > 0 && sbuf_add(&t->text, g_piece, (size_t)n)) {
        task_fail(t, 500, "out of memory");
        finish(s, sl, FINISH_ERROR);
        return;
    }
    if (t->n_stop) {
        int which = 0;
        long at = find_stop(t, t->text.p, t->text.n, before, &which);
        if (at >= 0) {
            t->text.n = (size_t)at;
            t->text.p[at] = 0;
            t->stop_word = t->stop[which];
            emit(s, sl, t->text.n);
            finish(s, sl, FINISH_STOP_WORD);
            return;
        }
    }
    emit(s, sl, t->text.n - stop_holdback(t, t->text.p, t->text.n, sl->n_emitted));
    if (t->json_object && json_fsm_complete(&sl->json)) finish(s, sl, FINISH_STOP_EOG);
    else if (t->n_gen >= t->n_predict) finish(s, sl, FINISH_LENGTH);
    else if (sl->n_cache >= s->n_ctx_slot) finish(s, sl, FINISH_CONTEXT);
    else sl->next_token = tok;
}

// ---- the loop --------------------------------------------------------------

// Waits for work and moves queued tasks into free slots. Returns false when
// the server stops and nothing is left.
static bool take_work(struct server *s) {
    struct task *start[256], *embed[256];
    int n_start = 0, n_embed = 0;
    pthread_mutex_lock(&s->mu);
    while (!s->stopping && s->n_busy == 0 && !s->queue_head) pthread_cond_wait(&s->wake, &s->mu);
    if (s->stopping && s->n_busy == 0 && !s->queue_head) {
        pthread_mutex_unlock(&s->mu);
        return false;
    }
    while (s->queue_head && n_embed < 256 && n_start < 256) {
        struct task *t = s->queue_head;
        if (t->kind == TASK_GENERATE && s->n_busy == s->cfg.n_slots && !s->stopping && !atomic_load(&t->cancel))
            break;
        // A decoder embeds through the KV cache, which it clears: wait until no slot
        // is generating (run_embed then forgets every slot's cached prompt).
        if (t->kind == TASK_EMBED && !engine_is_encoder(s->engine) && (s->n_busy > 0 || n_start > 0) &&
            !s->stopping && !atomic_load(&t->cancel))
            break;
        s->queue_head = t->next_queue;
        if (!s->queue_head) s->queue_tail = NULL;
        s->n_queued--;
        if (s->stopping || atomic_load(&t->cancel)) {
            t->finish = FINISH_CANCELLED;
            t->done = true;
            notify_locked(s, t);
        } else if (t->kind == TASK_EMBED) {
            embed[n_embed++] = t;
        } else {
            s->n_busy++;
            start[n_start++] = t;
        }
    }
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < n_start; i++) start_task(s, start[i]);
    for (int i = 0; i < n_embed; i++) run_embed(s, embed[i]);
    return true;
}

static void decode_step(struct server *s) {
    struct engine_batch *b = &g_batch;
    engine_batch_clear(b);
    const double now = server_now_ms();
    const int n_slots = s->cfg.n_slots;
    for (int i = 0; i < n_slots; i++) {
        struct slot *sl = &s->slots[i];
        sl->batch_i = -1;
        sl->chunk = 0;
        if (!sl->task) continue;
        if (atomic_load(&sl->task->cancel)) finish(s, sl, FINISH_CANCELLED);
        else if (now > sl->task->deadline_ms) finish(s, sl, FINISH_TIMEOUT);
    }
    // Generating slots first: one token each keeps their latency low.
    for (int i = 0; i < n_slots; i++) {
        struct slot *sl = &s->slots[i];
        if (!sl->task || !sl->generating) continue;
        sl->batch_i = b->n;
        engine_batch_add(b, sl->next_token, sl->n_cache, sl->id, true);
    }
    // Then prompt chunks, starting at a rotating slot so no prompt starves.
    static int rotate;
    rotate = (rotate + 1) % n_slots;
    for (int k = 0; k < n_slots && b->n < s->cfg.engine.n_batch; k++) {
        struct slot *sl = &s->slots[(rotate + k) % n_slots];
        if (!sl->task || sl->generating) continue;
        const struct task *t = sl->task;
        int32_t take = t->n_prompt - sl->n_prompt_done;
        if (take > s->cfg.engine.n_batch - b->n) take = s->cfg.engine.n_batch - b->n;
        for (int32_t j = 0; j < take; j++) {
            const int32_t p = sl->n_prompt_done + j;
            const bool last = p == t->n_prompt - 1;
            if (last) sl->batch_i = b->n;
            engine_batch_add(b, t->prompt[p], p, sl->id, last);
        }
        sl->chunk = take;
    }
    if (b->n == 0) return;
    llm_err err;
    if (engine_decode(s->engine, b, &err)) {
        fprintf(stderr, "llmfile server: decode failed: %s\n", err.msg);
        for (int i = 0; i < n_slots; i++) {
            struct slot *sl = &s->slots[i];
            if (!sl->task || (sl->batch_i < 0 && sl->chunk == 0)) continue;
            task_fail(sl->task, 500, err.msg);
            finish(s, sl, FINISH_ERROR);
        }
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->m.n_decode++;
    s->m.n_decode_tokens += (uint64_t)b->n;
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < n_slots; i++) {
        struct slot *sl = &s->slots[i];
        if (!sl->task) continue;
        if (sl->generating) {
            sl->cache[sl->n_cache++] = sl->next_token;
        } else if (sl->chunk > 0) {
            memcpy(sl->cache + sl->n_cache, sl->task->prompt + sl->n_prompt_done, (size_t)sl->chunk * sizeof(int32_t));
            sl->n_cache += sl->chunk;
            sl->n_prompt_done += sl->chunk;
            // every prompt token but the last (which gave logits) was a prompt row
            sl->n_exact = sl->n_prompt_done < sl->task->n_prompt ? sl->n_prompt_done : sl->task->n_prompt - 1;
            if (sl->n_prompt_done == sl->task->n_prompt) {
                sl->generating = true;
                sl->t_gen_start = server_now_ms();
                sl->task->t_prompt_ms = sl->t_gen_start - sl->t_start;
            }
        }
        if (sl->batch_i >= 0) on_logits(s, sl, engine_logits(s->engine, sl->batch_i));
    }
}

void *engine_thread_main(void *arg) {
    struct server *s = arg;
    while (take_work(s)) decode_step(s);
    return NULL;
}
