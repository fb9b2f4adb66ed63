// UTF-8 and GPT-2 byte mapping helpers (see unicode.h).
#include "unicode.h"

#include <string.h>

uint32_t tok_utf8_next(const char *str, size_t n, size_t *off) {
    const uint8_t *s = (const uint8_t *)str + *off;
    size_t left = n - *off;
    uint8_t c = s[0];
    if (!(c & 0x80)) {
        *off += 1;
        return c;
    }
    if (!(c & 0x40)) goto bad;
    if (!(c & 0x20)) {
        if (left < 2 || (s[1] & 0xC0) != 0x80) goto bad;
        *off += 2;
        return ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
    }
    if (!(c & 0x10)) {
        if (left < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) goto bad;
        *off += 3;
        return ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    }
    if (!(c & 0x08)) {
        if (left < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) goto bad;
        *off += 4;
        return ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
               (s[3] & 0x3F);
    }
bad:
    *off += 1;
    return 0xFFFD;
}

size_t tok_utf8_put(uint32_t cp, char *out) {
    if (cp <= 0x7F) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp <= 0x7FF) {
        out[0] = (char)(0xC0 | ((cp >> 6) & 0x1F));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp <= 0xFFFF) {
        out[0] = (char)(0xE0 | ((cp >> 12) & 0x0F));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp <= 0x10FFFF) {
        out[0] = (char)(0xF0 | ((cp >> 18) & 0x07));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
        return 4;
    }
    return 0;
}

// GPT-2 bytes_to_unicode: printable bytes stand for themselves, the others
// (0-32, 127-160, 173) map to 256, 257, ... in byte order.
static bool byte_is_printable(int b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

static uint32_t byte_to_cpt(uint8_t b) {
    if (byte_is_printable(b)) return b;
    uint32_t k = 0;
    for (int i = 0; i < b; i++)
        if (!byte_is_printable(i)) k++;
    return 256 + k;
}

size_t tok_bpe_byte_to_utf8(uint8_t b, char out[4]) { return tok_utf8_put(byte_to_cpt(b), out); }

int tok_bpe_cpt_to_byte(uint32_t cp) {
    if (cp < 256) return byte_is_printable((int)cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1; // 68 non-printable bytes
    uint32_t k = cp - 256;
    for (int b = 0; b < 256; b++)
        if (!byte_is_printable(b) && k-- == 0) return b;
    return -1;
}

size_t tok_bpe_decode_text(const char *s, size_t n, char *out, size_t cap) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp = tok_utf8_next(s, n, &i);
        int b = tok_bpe_cpt_to_byte(cp);
        if (b >= 0) {
            if (o < cap) out[o] = (char)b;
            o++;
            continue;
        }
        // llama.cpp renders an unmappable code point as [UNK_BYTE_0x<utf8 hex><token text>]
        char u[4];
        size_t k = tok_utf8_put(cp, u);
        char head[12 + 8];
        memcpy(head, "[UNK_BYTE_0x", 12);
        size_t h = 12;
        for (size_t j = 0; j < k; j++) {
            head[h++] = hex[(uint8_t)u[j] >> 4];
            head[h++] = hex[(uint8_t)u[j] & 15];
        }
        if (o + h + n + 1 <= cap) {
            memcpy(out + o, head, h);
            memcpy(out + o + h, s, n);
            out[o + h + n] = ']';
        }
        o += h + n + 1;
    }
    return o;
}
