// SentencePiece (tokenizer.ggml.model = llama): split into UTF-8 characters,
// repeatedly merge the adjacent pair whose concatenation is the token with the
// highest score (ties: leftmost first), then emit each piece's token, or its
// bytes as <0xNN> tokens when the piece is not in the vocabulary. Same result
// as llama.cpp's llm_tokenizer_spm_session.
#include "tok_internal.h"
#include "unicode.h"

#include <stdlib.h>

struct spm_sym {
    int32_t prev, next;
    uint32_t off, n; // bytes of the text; n == 0 once merged away
};

struct spm_bigram {
    float score;
    int32_t left, right;
    uint32_t size;
};

// Max-heap order: higher score first, then smaller left index.
static bool bigram_before(const struct spm_bigram *a, const struct spm_bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

struct spm_heap {
    struct spm_bigram *a;
    size_t n, cap;
};

static int heap_push(struct spm_heap *h, struct spm_bigram b) {
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 256;
        struct spm_bigram *na = realloc(h->a, nc * sizeof *na);
        if (!na) return -1;
        h->a = na;
        h->cap = nc;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bigram_before(&b, &h->a[p])) break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = b;
    return 0;
}

static struct spm_bigram heap_pop(struct spm_heap *h) {
    struct spm_bigram top = h->a[0];
    struct spm_bigram last = h->a[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n) break;
        size_t c = l;
        if (l + 1 < n && bigram_before(&h->a[l + 1], &h->a[l])) c = l + 1;
        if (!bigram_before(&h->a[c], &last)) break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (n) h->a[i] = last;
    return top;
}

static int try_add(const struct tok_vocab *v, const char *text, const struct spm_sym *sym, int32_t left,
                   int32_t right, struct spm_heap *h) {
    if (left < 0 || right < 0) return 0;
    uint32_t size = sym[left].n + sym[right].n;
    int32_t id = tok_strmap_find(v, text + sym[left].off, size);
    if (id < 0) return 0;
    return heap_push(h, (struct spm_bigram){v->score[id], left, right, size});
}

int tok_spm_fragment(const struct tok_vocab *v, const char *text, size_t len, struct tok_out *o, llm_err *err) {
    if (len == 0) return 0;
    struct spm_sym *sym = malloc(len * sizeof *sym);
    struct spm_heap h = {0};
    if (!sym) return err_set(err, "out of memory");
    int32_t ns = 0;
    for (size_t off = 0; off < len;) {
        size_t n = tok_utf8_len((uint8_t)text[off]);
        if (n > len - off) n = len - off;
        sym[ns] = (struct spm_sym){ns - 1, -1, (uint32_t)off, (uint32_t)n};
        off += n;
        if (off < len) sym[ns].next = ns + 1;
        ns++;
    }
    int rc = 0;
    for (int32_t i = 1; i < ns && !rc; i++) rc = try_add(v, text, sym, i - 1, i, &h);
    while (h.n && !rc) {
        struct spm_bigram b = heap_pop(&h);
        struct spm_sym *l = &sym[b.left], *r = &sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; // stale
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = b.left;
        rc = try_add(v, text, sym, l->prev, b.left, &h);
        if (!rc) rc = try_add(v, text, sym, b.left, l->next, &h);
    }
    if (rc) {
        free(sym);
        free(h.a);
        return err_set(err, "out of memory");
    }
    // Every merged piece is a token; an unmerged character that is not one
    // falls back to its bytes.
    for (int32_t i = 0; i != -1 && ns > 0; i = sym[i].next) {
        int32_t id = tok_strmap_find(v, text + sym[i].off, sym[i].n);
        if (id >= 0) {
            tok_emit(o, id);
            continue;
        }
        for (uint32_t j = 0; j < sym[i].n; j++) {
            int32_t b = v->byte_tok[(uint8_t)text[sym[i].off + j]];
            if (b < 0) b = v->unk;
            if (b < 0) {
                rc = err_set(err, "no byte-fallback token for byte 0x%02X and no unknown token",
                             (uint8_t)text[sym[i].off + j]);
                break;
            }
            tok_emit(o, b);
        }
        if (rc) break;
    }
    free(sym);
    free(h.a);
    return rc;
}
