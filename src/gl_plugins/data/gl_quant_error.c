/* gl-quant-error: the quantization error of a model's own tensors, measured with ggml's quantizers.
 *
 *   gl-quant-error MODEL JOBS [THREADS]
 *   gl-quant-error --version
 *
 * JOBS is a text file of lines:
 *   imatrix PATH            importances for the tensor lines that follow: ne0 x n_expert raw float32
 *                           values (in_sum2 / counts, as llama-quantize computes them); "imatrix -"
 *                           means none
 *   tensor NAME ROWS TYPE…  measure NAME, sampling ROWS evenly spaced rows (0: all), for each TYPE
 *
 * For each tensor the sampled rows are read from MODEL and dequantized with the source type's
 * to_float; each type quantizes them with ggml_quantize_chunk and the imatrix row weights, exactly
 * as llama-quantize calls it, and dequantizes them back. It prints, per tensor and type:
 *   err NAME TYPE ROWS ERR_W NORM_W ERR NORM
 *       sum (w - q)^2 m_j, sum w^2 m_j (m_j the importance of column j, 1 without an imatrix),
 *       sum (w - q)^2, sum w^2, over the sampled rows
 *   skip NAME TYPE REASON   row-length | needs-imatrix | imatrix-size | not-quantizable | unknown-type
 * and after each tensor
 *   done NAME ROWS_SAMPLED ROWS_TOTAL
 * Sums are reduced in a fixed order, so the figures do not depend on THREADS.
 * Errors: one line on stderr, exit status 1.
 */
#define _FILE_OFFSET_BITS 64
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ggml.h"
#include "gguf.h"

#define GL_QUANT_ERROR_VERSION "1"
#ifndef GL_SOURCE_SHA256
#define GL_SOURCE_SHA256 "unknown"
#endif
#define CHUNK_ROWS 16
#define MAX_TYPES 64

static const char * model_path;

static void die(const char * fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "gl-quant-error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* The types ggml_quantize_chunk can make (its switch); any other type aborts inside ggml. */
static int chunk_quantizable(enum ggml_type t) {
    switch (t) {
        case GGML_TYPE_Q1_0: case GGML_TYPE_Q2_0: case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1:
        case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1: case GGML_TYPE_Q8_0: case GGML_TYPE_MXFP4:
        case GGML_TYPE_NVFP4: case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K:
        case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K: case GGML_TYPE_TQ1_0: case GGML_TYPE_TQ2_0:
        case GGML_TYPE_IQ2_XXS: case GGML_TYPE_IQ2_XS: case GGML_TYPE_IQ3_XXS: case GGML_TYPE_IQ3_S:
        case GGML_TYPE_IQ2_S: case GGML_TYPE_IQ1_S: case GGML_TYPE_IQ1_M: case GGML_TYPE_IQ4_NL:
        case GGML_TYPE_IQ4_XS: case GGML_TYPE_F16: case GGML_TYPE_BF16: case GGML_TYPE_F32:
            return 1;
        default:
            return 0;
    }
}

static int type_by_name(const char * name) {
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        const char * n = ggml_type_name((enum ggml_type) t);
        if (ggml_blck_size((enum ggml_type) t) == 0 || n == NULL) continue;
        if (strcasecmp(n, name) == 0) return t;
    }
    return -1;
}

/* rows as float32; F32 has no to_float */
static void to_f32(enum ggml_type t, const void * src, float * dst, int64_t n) {
    if (t == GGML_TYPE_F32) {
        memcpy(dst, src, (size_t) n * sizeof(float));
        return;
    }
    ggml_get_type_traits(t)->to_float(src, dst, n);
}

/* ---------------------------------------------------------------- the work of one tensor */

struct sums { double err_w, norm_w, err, norm; };

struct job {
    const float * src;       /* sampled rows, float32, n_rows x ne0 */
    const int64_t * row_ids; /* their global row numbers (for the expert's imatrix slice) */
    const float * imatrix;   /* ne0 x n_expert, or NULL */
    int64_t ne0, ne1, n_rows, n_chunks;
    int n_types;
    enum ggml_type types[MAX_TYPES];
    struct sums * out;       /* n_types x n_chunks */
    pthread_mutex_t lock;
    int64_t next;            /* next work item: type * n_chunks + chunk */
};

static void work_item(struct job * j, int64_t item, void * qbuf, float * back) {
    const int ti = (int) (item / j->n_chunks);
    const int64_t c = item % j->n_chunks;
    const enum ggml_type t = j->types[ti];
    const int64_t r0 = c * CHUNK_ROWS;
    const int64_t r1 = r0 + CHUNK_ROWS < j->n_rows ? r0 + CHUNK_ROWS : j->n_rows;
    struct sums s = {0, 0, 0, 0};
    for (int64_t r = r0; r < r1; r++) {
        const float * w = j->src + r * j->ne0;
        const float * m = j->imatrix ? j->imatrix + (j->row_ids[r] / j->ne1) * j->ne0 : NULL;
        ggml_quantize_chunk(t, w, qbuf, 0, 1, j->ne0, m);
        to_f32(t, qbuf, back, j->ne0);
        for (int64_t i = 0; i < j->ne0; i++) {
            const double d = (double) w[i] - (double) back[i];
            const double wi = (double) w[i] * (double) w[i];
            const double mi = m ? (double) m[i] : 1.0;
            s.err += d * d;
            s.norm += wi;
            s.err_w += d * d * mi;
            s.norm_w += wi * mi;
        }
    }
    j->out[item] = s;
}

static void * worker(void * arg) {
    struct job * j = arg;
    void * qbuf = malloc(ggml_row_size(GGML_TYPE_F32, j->ne0));
    float * back = malloc((size_t) j->ne0 * sizeof(float));
    if (!qbuf || !back) die("out of memory");
    const int64_t total = (int64_t) j->n_types * j->n_chunks;
    for (;;) {
        pthread_mutex_lock(&j->lock);
        const int64_t item = j->next++;
        pthread_mutex_unlock(&j->lock);
        if (item >= total) break;
        work_item(j, item, qbuf, back);
    }
    free(qbuf);
    free(back);
    return NULL;
}

/* ---------------------------------------------------------------- reading */

static float * read_imatrix(const char * path, int64_t * n_out) {
    FILE * f = fopen(path, "rb");
    if (!f) die("%s: cannot open the importance file (%s)", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size % 4 != 0 || st.st_size == 0)
        die("%s: not a file of float32 importances", path);
    float * v = malloc((size_t) st.st_size);
    if (!v) die("out of memory");
    if (fread(v, 1, (size_t) st.st_size, f) != (size_t) st.st_size) die("%s: short read", path);
    fclose(f);
    *n_out = st.st_size / 4;
    return v;
}

static void measure(struct gguf_context * ctx, int fd, off_t file_size, const char * name, int64_t want_rows,
                    char ** type_names, int n_types, const float * imatrix, int64_t imatrix_n, int threads) {
    const int64_t id = gguf_find_tensor(ctx, name);
    if (id < 0) die("%s: no tensor named %s", model_path, name);
    const enum ggml_type src_type = gguf_get_tensor_type(ctx, id);
    const int64_t * ne = gguf_get_tensor_ne(ctx, id);
    const int64_t ne0 = ne[0], ne1 = ne[1], n_expert = ne[2];
    const int64_t rows_total = ne[1] * ne[2] * ne[3];
    const size_t src_row = ggml_row_size(src_type, ne0);
    const off_t base = (off_t) (gguf_get_data_offset(ctx) + gguf_get_tensor_offset(ctx, id));
    if (src_type != GGML_TYPE_F32 && ggml_get_type_traits(src_type)->to_float == NULL)
        die("%s: tensor %s is %s, which ggml cannot dequantize", model_path, name, ggml_type_name(src_type));
    if (base + (off_t) gguf_get_tensor_size(ctx, id) > file_size)
        die("%s: file is truncated: tensor %s ends past the end of the file", model_path, name);

    const int64_t n_rows = want_rows <= 0 || want_rows >= rows_total ? rows_total : want_rows;
    int64_t * row_ids = malloc((size_t) n_rows * sizeof(int64_t));
    float * src = malloc((size_t) n_rows * (size_t) ne0 * sizeof(float));
    void * raw = malloc(src_row);
    if (!row_ids || !src || !raw) die("out of memory");
    for (int64_t r = 0; r < n_rows; r++) {
        row_ids[r] = (int64_t) ((__int128) r * rows_total / n_rows); /* evenly spaced, row 0 first */
        if (pread(fd, raw, src_row, base + (off_t) (row_ids[r] * (int64_t) src_row)) != (ssize_t) src_row)
            die("%s: cannot read row %lld of %s", model_path, (long long) row_ids[r], name);
        to_f32(src_type, raw, src + r * ne0, ne0);
    }
    free(raw);

    struct job j = { .src = src, .row_ids = row_ids, .imatrix = NULL, .ne0 = ne0, .ne1 = ne1, .n_rows = n_rows,
                     .n_chunks = (n_rows + CHUNK_ROWS - 1) / CHUNK_ROWS, .n_types = 0, .next = 0 };
    int imatrix_ok = imatrix != NULL && imatrix_n == ne0 * n_expert;
    if (imatrix_ok) j.imatrix = imatrix;
    int slot[MAX_TYPES];
    for (int i = 0; i < n_types; i++) {
        slot[i] = -1;
        const int t = type_by_name(type_names[i]);
        const char * why = NULL;
        if (t < 0) why = "unknown-type";
        else if (!chunk_quantizable((enum ggml_type) t)) why = "not-quantizable";
        else if (ne0 % ggml_blck_size((enum ggml_type) t)) why = "row-length";
        else if (imatrix != NULL && !imatrix_ok) why = "imatrix-size";
        else if (!imatrix_ok && ggml_quantize_requires_imatrix((enum ggml_type) t)) why = "needs-imatrix";
        if (why) {
            printf("skip %s %s %s\n", name, type_names[i], why);
            continue;
        }
        slot[i] = j.n_types;
        j.types[j.n_types++] = (enum ggml_type) t;
    }
    if (j.n_types > 0) {
        j.out = calloc((size_t) j.n_types * (size_t) j.n_chunks, sizeof(struct sums));
        if (!j.out) die("out of memory");
        pthread_mutex_init(&j.lock, NULL);
        int n_threads = threads < 1 ? 1 : threads;
        pthread_t * tids = malloc(sizeof(pthread_t) * (size_t) n_threads);
        for (int k = 1; k < n_threads; k++) pthread_create(&tids[k], NULL, worker, &j);
        worker(&j);
        for (int k = 1; k < n_threads; k++) pthread_join(tids[k], NULL);
        free(tids);
        pthread_mutex_destroy(&j.lock);
        for (int i = 0; i < n_types; i++) {
            if (slot[i] < 0) continue;
            struct sums s = {0, 0, 0, 0};
            for (int64_t c = 0; c < j.n_chunks; c++) {
                const struct sums * p = &j.out[(int64_t) slot[i] * j.n_chunks + c];
                s.err_w += p->err_w; s.norm_w += p->norm_w; s.err += p->err; s.norm += p->norm;
            }
            printf("err %s %s %lld %.17g %.17g %.17g %.17g\n", name, ggml_type_name(j.types[slot[i]]),
                   (long long) n_rows, s.err_w, s.norm_w, s.err, s.norm);
        }
        free(j.out);
    }
    printf("done %s %lld %lld\n", name, (long long) n_rows, (long long) rows_total);
    fflush(stdout);
    free(src);
    free(row_ids);
}

int main(int argc, char ** argv) {
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("gl-quant-error %s source %s ggml %s %s\n", GL_QUANT_ERROR_VERSION, GL_SOURCE_SHA256,
               ggml_version(), ggml_commit());
        return 0;
    }
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: gl-quant-error MODEL JOBS [THREADS]\n       gl-quant-error --version\n");
        return 2;
    }
    model_path = argv[1];
    const int threads = argc == 4 ? atoi(argv[3]) : 1;
    struct gguf_init_params params = { .no_alloc = true, .ctx = NULL };
    struct gguf_context * ctx = gguf_init_from_file(model_path, params);
    if (!ctx) die("%s: cannot be read as a GGUF file", model_path);
    const int fd = open(model_path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) die("%s: cannot open (%s)", model_path, strerror(errno));
    FILE * jobs = fopen(argv[2], "r");
    if (!jobs) die("%s: cannot open the job list (%s)", argv[2], strerror(errno));

    float * imatrix = NULL;
    int64_t imatrix_n = 0;
    char * line = NULL;
    size_t cap = 0;
    long lineno = 0;
    while (getline(&line, &cap, jobs) > 0) {
        lineno++;
        char * words[MAX_TYPES + 3];
        int n = 0;
        for (char * tok = strtok(line, " \t\r\n"); tok && n < MAX_TYPES + 3; tok = strtok(NULL, " \t\r\n"))
            words[n++] = tok;
        if (n == 0) continue;
        if (strcmp(words[0], "imatrix") == 0 && n == 2) {
            free(imatrix);
            imatrix = NULL;
            imatrix_n = 0;
            if (strcmp(words[1], "-") != 0) imatrix = read_imatrix(words[1], &imatrix_n);
        } else if (strcmp(words[0], "tensor") == 0 && n >= 4) {
            char * end;
            const long long rows = strtoll(words[2], &end, 10);
            if (*end) die("%s:%ld: ROWS must be a whole number, not %s", argv[2], lineno, words[2]);
            measure(ctx, fd, st.st_size, words[1], rows, words + 3, n - 3, imatrix, imatrix_n, threads);
        } else {
            die("%s:%ld: expected `imatrix PATH` or `tensor NAME ROWS TYPE...`", argv[2], lineno);
        }
    }
    free(line);
    free(imatrix);
    fclose(jobs);
    close(fd);
    gguf_free(ctx);
    ggml_quantize_free();
    return 0;
}
