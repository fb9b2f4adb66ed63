// Interleaved rows (kern.h): the repacking done once at load. Plain C: it
// runs once per weight, at memory speed.
#include <stdlib.h>
#include <string.h>

#include "kern.h"

// Quant bytes per block of the types with an interleaved layout (each block:
// an fp16 scale d, then the quants), or 0.
static size_t ilv_quant_bytes(int type) {
    switch (type) {
    case QUANT_Q4_0: return QUANT_QK / 2;
    case QUANT_Q8_0: return QUANT_QK;
    default: return 0;
    }
}

bool kern_can_interleave(const struct kern_ops *o, const struct kern_mat *w) {
    if (w->interleaved || w->type < 0 || w->type >= QUANT_TYPE_COUNT || !ilv_quant_bytes(w->type)) return false;
    if (!o->gemv_ilv[w->type] || w->rows <= 0 || w->rows % KERN_ILV_ROWS) return false;
    if (w->cols <= 0 || w->row_bytes != quant_row_bytes(w->type, w->cols)) return false;
    // the GEMM must read the layout too, with panels of one group
    const struct kern_gemm *g = o->gemm[w->type];
    return !g || (g->pack_ilv && g->rm == KERN_ILV_ROWS);
}

int kern_interleave(struct kern_mat *w, void *data, llm_err *err) {
    const size_t qb = ilv_quant_bytes(w->type), bb = quant_get(w->type)->block_bytes;
    const size_t group_bytes = KERN_ILV_ROWS * w->row_bytes, blocks = w->row_bytes / bb;
    uint8_t *rows = malloc(group_bytes);
    if (!rows) return err_set(err, "interleave: out of memory for %zu bytes", group_bytes);
    for (int64_t g = 0; g < w->rows / KERN_ILV_ROWS; g++) {
        uint8_t *out = (uint8_t *)data + (size_t)g * group_bytes;
        memcpy(rows, out, group_bytes);
        for (size_t b = 0; b < blocks; b++, out += KERN_ILV_ROWS * bb) {
            for (int r = 0; r < KERN_ILV_ROWS; r++) {
                const uint8_t *blk = rows + (size_t)r * w->row_bytes + b * bb;
                memcpy(out + 2 * r, blk, 2); // d
                for (size_t p = 0; p < qb / 4; p++) memcpy(out + 2 * KERN_ILV_ROWS + 64 * p + 4 * r, blk + 2 + 4 * p, 4);
            }
        }
    }
    free(rows);
    w->data = data;
    w->interleaved = true;
    return 0;
}

void kern_mat_row_f32(const struct kern_mat *w, int64_t r, float *out) {
    const struct quant_traits *tr = quant_get(w->type);
    if (!w->interleaved) {
        tr->to_f32((const uint8_t *)w->data + (size_t)r * w->row_bytes, out, w->cols);
        return;
    }
    // block b of row r back together from its group's block, then as usual
    const size_t qb = ilv_quant_bytes(w->type), bb = tr->block_bytes, blocks = w->row_bytes / bb;
    const uint8_t *grp = (const uint8_t *)w->data + (size_t)(r / KERN_ILV_ROWS) * KERN_ILV_ROWS * w->row_bytes;
    const int ri = (int)(r % KERN_ILV_ROWS);
    uint8_t blk[2 + QUANT_QK];
    for (size_t b = 0; b < blocks; b++) {
        const uint8_t *gb = grp + b * KERN_ILV_ROWS * bb;
        memcpy(blk, gb + 2 * ri, 2);
        for (size_t p = 0; p < qb / 4; p++) memcpy(blk + 2 + 4 * p, gb + 2 * KERN_ILV_ROWS + 64 * p + 4 * ri, 4);
        tr->to_f32(blk, out + b * tr->block_elems, tr->block_elems);
    }
}
