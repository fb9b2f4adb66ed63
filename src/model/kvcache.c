#include <stdlib.h>
#include <string.h>

#include "model.h"

int kv_init(struct kv_cache *kv, const struct model_hparams *hp, int64_t n_cells, int32_t n_seq_max,
            llm_err *err) {
    memset(kv, 0, sizeof *kv);
    if (n_cells <= 0 || n_cells > (1 << 24)) return err_set(err, "context size %lld out of range", (long long)n_cells);
    if (n_seq_max <= 0) return err_set(err, "need at least one sequence");
    kv->n_cells = n_cells;
    kv->n_layer = hp->n_layer;
    kv->n_head_kv = hp->n_head_kv;
    kv->head_dim_k = hp->head_dim_k;
    kv->head_dim_v = hp->head_dim_v;
    kv->k_width = hp->n_head_kv * hp->head_dim_k;
    kv->v_width = hp->n_head_kv * hp->head_dim_v;
    kv->n_seq_max = n_seq_max;
    const size_t k_elems = (size_t)hp->n_layer * (size_t)n_cells * (size_t)kv->k_width;
    const size_t v_elems = (size_t)hp->n_layer * (size_t)n_cells * (size_t)kv->v_width;
    kv->k = malloc(k_elems * sizeof(fp16_t));
    kv->v = malloc(v_elems * sizeof(fp16_t));
    kv->pos = malloc((size_t)n_cells * sizeof(int32_t));
    kv->seq = malloc((size_t)n_cells * sizeof(int32_t));
    if (!kv->k || !kv->v || !kv->pos || !kv->seq) {
        kv_free(kv);
        return err_set(err, "out of memory allocating the KV cache (%zu MiB for %lld tokens)",
                       (k_elems + v_elems) * sizeof(fp16_t) >> 20, (long long)n_cells);
    }
    for (int64_t i = 0; i < n_cells; i++) kv->pos[i] = -1, kv->seq[i] = -1;
    return 0;
}

void kv_free(struct kv_cache *kv) {
    free(kv->k);
    free(kv->v);
    free(kv->pos);
    free(kv->seq);
    memset(kv, 0, sizeof *kv);
}

void kv_seq_rm(struct kv_cache *kv, int32_t seq, int32_t p0, int32_t p1) {
    for (int64_t i = 0; i < kv->n_cells; i++) {
        if (kv->pos[i] < 0 || (seq >= 0 && kv->seq[i] != seq)) continue;
        if (kv->pos[i] >= p0 && (p1 < 0 || kv->pos[i] < p1)) {
            kv->pos[i] = -1;
            kv->seq[i] = -1;
            kv->n_used--;
        }
    }
}

int kv_seq_cp(struct kv_cache *kv, int32_t src, int32_t dst, int32_t p0, int32_t p1, llm_err *err) {
    int64_t free_cell = 0;
    for (int64_t i = 0; i < kv->n_cells; i++) {
        if (kv->seq[i] != src || kv->pos[i] < p0 || (p1 >= 0 && kv->pos[i] >= p1)) continue;
        while (free_cell < kv->n_cells && kv->pos[free_cell] >= 0) free_cell++;
        if (free_cell == kv->n_cells) return err_set(err, "KV cache full while copying a sequence");
        for (int64_t l = 0; l < kv->n_layer; l++)
            for (int64_t h = 0; h < kv->n_head_kv; h++) {
                memcpy(kv_key(kv, l, h, free_cell), kv_key(kv, l, h, i), (size_t)kv->head_dim_k * sizeof(fp16_t));
                memcpy(kv_value(kv, l, h, free_cell), kv_value(kv, l, h, i), (size_t)kv->head_dim_v * sizeof(fp16_t));
            }
        kv->pos[free_cell] = kv->pos[i];
        kv->seq[free_cell] = dst;
        kv->n_used++;
    }
    return 0;
}

int32_t kv_seq_pos_max(const struct kv_cache *kv, int32_t seq) {
    int32_t max = -1;
    for (int64_t i = 0; i < kv->n_cells; i++)
        if (kv->seq[i] == seq && kv->pos[i] > max) max = kv->pos[i];
    return max;
}
