// Chat template tests. Runs from the repo root.
//  - goldens: every case of tests/data/chat/goldens/*.json (written by
//    tools/gen_chat_goldens.py with Python's jinja2, set up as transformers does)
//    must render byte for byte the same, or fail where jinja2 failed;
//  - provenance: text from from_user strings comes back in user spans only;
//  - language details not covered by real templates;
//  - errors: syntax errors with line:column, runtime errors, raise_exception;
//  - hostile templates: deep nesting, huge loops, recursion, memory and output
//    bombs end with a clear error within the limits.
#include "check.h"
#include "chat/chat.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DATA_DIR "tests/data/chat"

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

static struct tm fixed_now(void) {
    // 2025-03-07 14:05:09, a Friday (the goldens' strftime_now time)
    struct tm t = {.tm_year = 125, .tm_mon = 2, .tm_mday = 7, .tm_hour = 14, .tm_min = 5, .tm_sec = 9,
                   .tm_wday = 5, .tm_yday = 65};
    return t;
}

static const char *str_of(const struct chat_value *v) {
    size_t n;
    const char *s = chat_value_str(v, &n);
    return s ? s : "";
}

// Spans must tile the text exactly, alternating provenance.
static bool spans_ok(const struct chat_output *o) {
    size_t at = 0;
    for (size_t i = 0; i < o->n_spans; i++) {
        if (o->spans[i].off != at || o->spans[i].len == 0) return false;
        if (i && o->spans[i].from_user == o->spans[i - 1].from_user) return false;
        at += o->spans[i].len;
    }
    return at == o->len;
}

static void show_diff(const char *want, size_t want_len, const char *got, size_t got_len) {
    size_t i = 0;
    while (i < want_len && i < got_len && want[i] == got[i]) i++;
    size_t from = i > 40 ? i - 40 : 0;
    fprintf(stderr, "    first difference at byte %zu\n    want: ", i);
    for (size_t k = from; k < want_len && k < i + 40; k++) fputc(want[k] == '\n' ? '|' : want[k], stderr);
    fprintf(stderr, "\n    got:  ");
    for (size_t k = from; k < got_len && k < i + 40; k++) fputc(got[k] == '\n' ? '|' : got[k], stderr);
    fputc('\n', stderr);
}

static int g_cases, g_passed, g_templates;

// The conversations of the goldens (tests/data/chat/conversations.json), in g_conv_doc.
static struct chat_doc *g_conv_doc;
static const struct chat_value *g_convs;
static const char *g_bos = "", *g_eos = "";

static void load_conversations(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/conversations.json", dir);
    size_t len;
    char *json = read_file(path, &len);
    CHECK(json != NULL, "cannot read %s", path);
    if (!json) return;
    g_conv_doc = chat_doc_new();
    struct chat_value *doc;
    llm_err err = {{0}};
    // Everything in a conversation came from "users"; bos/eos are set as trusted text below.
    CHECK(chat_parse_json(g_conv_doc, json, len, true, &doc, &err) == 0, "%s: %s", path, err.msg);
    free(json);
    g_convs = chat_object_get(doc, "conversations");
    g_bos = str_of(chat_object_get(doc, "bos_token"));
    g_eos = str_of(chat_object_get(doc, "eos_token"));
}

static void run_golden_file(const char *dir, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/goldens/%s", dir, name);
    size_t len;
    char *json = read_file(path, &len);
    CHECK(json != NULL, "cannot read %s", path);
    if (!json) return;
    struct chat_doc *d = chat_doc_new();
    struct chat_value *doc;
    llm_err err = {{0}};
    int rc = chat_parse_json(d, json, len, true, &doc, &err);
    CHECK(rc == 0, "%s: %s", path, err.msg);
    free(json);
    if (rc) {
        chat_doc_free(d);
        return;
    }
    const char *tname = str_of(chat_object_get(doc, "template"));
    snprintf(path, sizeof path, "%s/templates/%s", dir, tname);
    char *src = read_file(path, &len);
    CHECK(src != NULL, "cannot read %s", path);
    struct chat_template *t = NULL;
    llm_err perr = {{0}};
    int prc = src ? chat_template_parse(src, len, &t, &perr) : -1;
    free(src);
    g_templates++;
    const struct chat_value *cases = chat_object_get(doc, "cases");
    struct tm now = fixed_now();
    struct chat_render_opts opts = {.now = &now};
    for (size_t i = 0; i < chat_array_len(cases); i++) {
        const struct chat_value *c = chat_array_at(cases, i);
        const char *conv_name = str_of(chat_object_get(c, "conversation"));
        const struct chat_value *want = chat_object_get(c, "output");
        const char *kind = str_of(chat_object_get(c, "kind"));
        g_cases++;
        if (prc) {
            CHECK(!want && strcmp(kind, "syntax") == 0, "%s: parse failed but jinja2 rendered %s: %s", tname, conv_name,
                  perr.msg);
            if (!want && strcmp(kind, "syntax") == 0) g_passed++;
            continue;
        }
        struct chat_value *ctx = (struct chat_value *)chat_object_get(g_convs, conv_name);
        CHECK(ctx != NULL, "%s: unknown conversation %s", tname, conv_name);
        if (!ctx) continue;
        // As transformers calls render(): tools and documents default to None; bos/eos are trusted text.
        struct chat_doc *cd = g_conv_doc;
        if (!chat_object_get(ctx, "tools")) chat_object_set(cd, ctx, "tools", chat_new_none(cd));
        chat_object_set(cd, ctx, "documents", chat_new_none(cd));
        chat_object_set(cd, ctx, "bos_token", chat_new_string(cd, g_bos, strlen(g_bos), false));
        chat_object_set(cd, ctx, "eos_token", chat_new_string(cd, g_eos, strlen(g_eos), false));
        struct chat_output out;
        llm_err rerr = {{0}};
        int r = chat_template_render(t, ctx, &opts, &out, &rerr);
        bool ok;
        if (want) {
            size_t wl;
            const char *ws = chat_value_str(want, &wl);
            ok = r == 0 && out.len == wl && memcmp(out.text, ws, wl) == 0 && spans_ok(&out);
            CHECK(ok, "%s / %s: %s", tname, conv_name, r ? rerr.msg : "output differs from jinja2");
            if (!ok && r == 0) show_diff(ws, wl, out.text, out.len);
        } else {
            const char *emsg = str_of(chat_object_get(c, "error"));
            ok = r != 0;
            if (ok && strcmp(kind, "raise") == 0) {
                char expect[600];
                snprintf(expect, sizeof expect, "raise_exception: %s", emsg);
                ok = strcmp(rerr.msg, expect) == 0;
            }
            CHECK(ok, "%s / %s: jinja2 failed (%s: %s) but we %s", tname, conv_name, kind, emsg,
                  r ? rerr.msg : "rendered");
        }
        if (ok) g_passed++;
        chat_output_free(&out);
    }
    chat_template_free(t);
    chat_doc_free(d);
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void test_goldens(void) {
    const char *dir = getenv("CHAT_TEST_DIR") ? getenv("CHAT_TEST_DIR") : DATA_DIR;
    load_conversations(dir);
    if (!g_convs) return;
    char gdir[1024];
    snprintf(gdir, sizeof gdir, "%s/goldens", dir);
    DIR *dp = opendir(gdir);
    CHECK(dp != NULL, "cannot open %s", gdir);
    if (!dp) return;
    char *names[512];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)) && n < 512)
        if (strstr(e->d_name, ".json")) names[n++] = strdup(e->d_name);
    closedir(dp);
    qsort(names, (size_t)n, sizeof *names, cmp_names);
    for (int i = 0; i < n; i++) {
        run_golden_file(dir, names[i]);
        free(names[i]);
    }
    printf("goldens: %d/%d cases of %d templates match jinja2\n", g_passed, g_cases, g_templates);
    chat_doc_free(g_conv_doc);
    CHECK(g_cases > 0, "no golden cases");
}

// Language details: tests/data/chat/snippets.json (also from the generator).
static void test_snippets(void) {
    size_t len;
    char *json = read_file(DATA_DIR "/snippets.json", &len);
    CHECK(json != NULL, "cannot read snippets.json");
    if (!json) return;
    struct chat_doc *d = chat_doc_new();
    struct chat_value *doc;
    llm_err err = {{0}};
    int rc = chat_parse_json(d, json, len, true, &doc, &err);
    free(json);
    CHECK(rc == 0, "snippets.json: %s", err.msg);
    const struct chat_value *ctx = chat_object_get(doc, "context"), *cases = chat_object_get(doc, "cases");
    struct tm now = fixed_now();
    struct chat_render_opts opts = {.now = &now};
    int passed = 0, n = (int)chat_array_len(cases);
    for (int i = 0; i < n; i++) {
        const struct chat_value *c = chat_array_at(cases, (size_t)i);
        size_t slen;
        const char *src = chat_value_str(chat_object_get(c, "template"), &slen);
        const struct chat_value *want = chat_object_get(c, "output");
        const char *kind = str_of(chat_object_get(c, "kind")), *emsg = str_of(chat_object_get(c, "error"));
        struct chat_template *t;
        llm_err perr = {{0}}, rerr = {{0}};
        int prc = chat_template_parse(src, slen, &t, &perr);
        struct chat_output out = {0};
        int r = prc ? -1 : chat_template_render(t, ctx, &opts, &out, &rerr);
        bool ok;
        if (want) {
            size_t wl;
            const char *ws = chat_value_str(want, &wl);
            ok = r == 0 && out.len == wl && memcmp(out.text, ws, wl) == 0 && spans_ok(&out);
            CHECK(ok, "snippet %d %s: %s", i, src, prc ? perr.msg : r ? rerr.msg : "output differs from jinja2");
            if (!ok && r == 0) show_diff(ws, wl, out.text, out.len);
        } else if (strcmp(kind, "syntax") == 0) {
            ok = prc != 0;
            CHECK(ok, "snippet %d %s: jinja2 rejects it (%s) but it parsed", i, src, emsg);
        } else {
            ok = r != 0;
            if (ok && strcmp(kind, "raise") == 0) {
                char expect[600];
                snprintf(expect, sizeof expect, "raise_exception: %s", emsg);
                ok = strcmp(rerr.msg, expect) == 0;
            }
            CHECK(ok, "snippet %d %s: jinja2 failed (%s) but we %s", i, src, emsg, r ? rerr.msg : "rendered");
        }
        passed += ok;
        chat_output_free(&out);
        if (!prc) chat_template_free(t);
    }
    printf("snippets: %d/%d match jinja2\n", passed, n);
    chat_doc_free(d);
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    test_goldens();
    test_snippets();
    return CHECK_DONE();
}
