// Interleaved rows (kern.h): the repacking done once at load, and reading a
// row back. Plain C: it runs once per weight, at memory speed.
#include <stdlib.h>
#include <string.h>

#include "kern.h"

// The layouts (kern.h): legacy blocks (an fp16 d, then the quants, Q5_0's
// fifth bits first) keep the scales apart, Q8_0's quants made unsigned (+128);
// K-quant blocks interleave every dword (Q6_K's 2-byte tail, its d, goes after
// them); 16-bit floats every value.
enum { ILV_NONE, ILV_LEGACY, ILV_LEGACY_U8, ILV_DWORDS, ILV_HALVES };

static int ilv_layout(int type) {
    switch (type) {
    case QUANT_Q4_0:
    case QUANT_Q5_0: return ILV_LEGACY;
    case QUANT_Q8_0: return ILV_LEGACY_U8;
    case QUANT_Q4_K:
    case QUANT_Q5_K:
    case QUANT_Q6_K: return ILV_DWORDS;
    case QUANT_F16:
    case QUANT_BF16: return ILV_HALVES;
    default: return ILV_NONE;
    }
}

bool kern_can_interleave(const struct kern_ops *o, const struct kern_mat *w) {
    if (w->interleaved || w->type < 0 || w->type >= QUANT_TYPE_COUNT || ilv_layout(w->type) == ILV_NONE)
        return false;
    if (!o->gemv_ilv[w->type] || w->rows <= 0 || w->rows % KERN_ILV_ROWS) return false;
    if (w->cols <= 0 || w->row_bytes != quant_row_bytes(w->type, w->cols)) return false;
    // the GEMM must read the layout too, with panels of whole groups
    const struct kern_gemm *g = o->gemm[w->type];
    return !g || (g->pack_ilv && g->rm % KERN_ILV_ROWS == 0);
}

// Row ri's block blk (bb bytes) into, or out of, its group's block gb.
// Constant-size copies: each is one move (this runs over every weight byte).
static void ilv_block(int layout, size_t bb, int ri, uint8_t *gb, uint8_t *blk, bool into_group) {
    if (layout == ILV_HALVES) { // bb = 2
        if (into_group) memcpy(gb + 2 * ri, blk, 2);
        else memcpy(blk, gb + 2 * ri, 2);
        return;
    }
    uint32_t flip = 0;
    if (layout == ILV_LEGACY || layout == ILV_LEGACY_U8) { // d apart, then the rest in dwords
        if (into_group) memcpy(gb + 2 * ri, blk, 2);
        else memcpy(blk, gb + 2 * ri, 2);
        gb += 2 * KERN_ILV_ROWS, blk += 2, bb -= 2;
        if (layout == ILV_LEGACY_U8) flip = 0x80808080u; // signed quants <-> unsigned (q + 128)
    }
    uint8_t *dw = gb + 4 * ri;
    for (size_t t = 0; t < bb / 4; t++, dw += 64, blk += 4) {
        uint32_t v;
        memcpy(&v, into_group ? blk : dw, 4);
        v ^= flip;
        memcpy(into_group ? dw : blk, &v, 4);
    }
    if (bb % 4) { // Q6_K's d, after the dwords of the group
        uint8_t *tail = gb + bb / 4 * 64 + 2 * ri;
        if (into_group) memcpy(tail, blk, 2);
        else memcpy(blk, tail, 2);
    }
}

int kern_interleave(struct kern_mat *w, void *data, llm_err *err) {
    const int layout = ilv_layout(w->type);
    const size_t bb = quant_get(w->type)->block_bytes;
    const size_t group_bytes = KERN_ILV_ROWS * w->row_bytes, blocks = w->row_bytes / bb;
    uint8_t *rows = malloc(group_bytes);
    if (!rows) return err_set(err, "interleave: out of memory for %zu bytes", group_bytes);
    for (int64_t g = 0; g < w->rows / KERN_ILV_ROWS; g++) {
        uint8_t *out = (uint8_t *)data + (size_t)g * group_bytes;
        memcpy(rows, out, group_bytes);
        if (layout == ILV_HALVES) { // a value at a time: a transpose of 16 rows
            uint16_t *o16 = (uint16_t *)(void *)out;
            const uint16_t *r16 = (const uint16_t *)(void *)rows;
            for (size_t b = 0; b < blocks; b++)
                for (int r = 0; r < KERN_ILV_ROWS; r++) o16[b * KERN_ILV_ROWS + r] = r16[(size_t)r * blocks + b];
            continue;
        }
        for (size_t b = 0; b < blocks; b++)
            for (int r = 0; r < KERN_ILV_ROWS; r++)
                ilv_block(layout, bb, r, out + b * KERN_ILV_ROWS * bb, rows + (size_t)r * w->row_bytes + b * bb,
                          true);
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
    const int layout = ilv_layout(w->type);
    const size_t bb = tr->block_bytes, blocks = w->row_bytes / bb;
    uint8_t *grp = (uint8_t *)w->data + (size_t)(r / KERN_ILV_ROWS) * KERN_ILV_ROWS * w->row_bytes;
    uint8_t blk[256];
    for (size_t b = 0; b < blocks; b++) {
        ilv_block(layout, bb, (int)(r % KERN_ILV_ROWS), grp + b * KERN_ILV_ROWS * bb, blk, false);
        tr->to_f32(blk, out + b * tr->block_elems, tr->block_elems);
    }
}
