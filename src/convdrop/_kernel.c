/* Fused DropBlock kernel for contiguous CPU tensors (float32 and float64).
 *
 * The PyTorch-level path writes x * scale in one pass and then zeroes the dropped
 * blocks by index in a second, scattered pass: by then the output has left the
 * cache, so every touched cache line is read and written again. Here each feature
 * map is scaled and then has its blocks zeroed while it is still in L1/L2, so the
 * tensor streams through memory once: one read of the source, one write of the
 * destination, as for ``x * scalar``.
 *
 * Geometry (shared with convdrop._sampling): a tensor (N, C, D, H, W) (1d and 2d
 * maps are padded with leading sides of 1) has maps of D*H*W contiguous units. A
 * seed id s names key s / P and block corner s % P (row-major over the valid region
 * (D-kd+1, H-kh+1, W-kw+1), P its size); the block spans [corner, corner + k) per
 * dim. A key is a map (n * C + c), or a sample n when masks are shared by channels.
 * Seeds are sorted, so a map's seeds are neighbours.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t side[3];  /* D, H, W */
    int64_t block[3]; /* kd, kh, kw, each clipped to its side */
    int64_t valid[3]; /* side - block + 1 */
    int64_t map_size; /* D * H * W */
    int64_t positions; /* valid[0] * valid[1] * valid[2] */
} Geometry;

typedef struct {
    const void *src;
    void *dst;
    int dtype; /* 0: float32, 1: float64 */
    const int64_t *seeds;
    int64_t n_seeds;
    int64_t channels;
    int shared;
    double scale;
    double zero; /* 0.0, read at run time so that zeroing loops stay loops, not memset calls */
    Geometry g;
    int64_t map_begin, map_end; /* this worker's maps */
} Job;

/* Units scaled before their blocks are zeroed: small enough to stay in L2. */
#define CHUNK_UNITS 16384

/* First index i in [lo, n) with seeds[i] >= value, searching forward from lo. */
static int64_t advance(const int64_t *seeds, int64_t lo, int64_t n, int64_t value) {
    while (lo < n && seeds[lo] < value) ++lo;
    return lo;
}

/* First index i in [lo, hi) with seeds[i] >= value (hi if none). */
static int64_t lower_bound(const int64_t *seeds, int64_t lo, int64_t hi, int64_t value) {
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (seeds[mid] < value)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The block as contiguous runs: ``count`` runs of ``length`` units, one per (d, h)
 * row, merged when the block spans whole rows (or whole planes). */
typedef struct {
    int64_t rows_d, rows_h, length;
} Runs;

static Runs block_runs(const Geometry *g) {
    Runs r = {g->block[0], g->block[1], g->block[2]};
    if (g->block[2] == g->side[2]) { /* whole rows: one run per plane */
        r.length *= r.rows_h;
        r.rows_h = 1;
        if (g->block[1] == g->side[1]) { /* whole planes: one run */
            r.length *= r.rows_d;
            r.rows_d = 1;
        }
    }
    return r;
}

/* Zero the block with corner id ``corner`` (within its map) of ``map``, of type T. */
#define DEFINE_ZERO_BLOCK(T)                                                               \
    static void zero_block_##T(T *map, int64_t corner, const Geometry *g, const Runs *r,  \
                               T zero) {                                                   \
        int64_t cw = corner % g->valid[2], rest = corner / g->valid[2];                    \
        int64_t ch = rest % g->valid[1], cd = rest / g->valid[1];                          \
        for (int64_t d = 0; d < r->rows_d; ++d)                                            \
            for (int64_t h = 0; h < r->rows_h; ++h) {                                      \
                T *run = map + ((cd + d) * g->side[1] + ch + h) * g->side[2] + cw;         \
                for (int64_t i = 0; i < r->length; ++i) run[i] = zero;                     \
            }                                                                              \
    }

typedef char byte;
DEFINE_ZERO_BLOCK(float)
DEFINE_ZERO_BLOCK(double)
DEFINE_ZERO_BLOCK(byte)

/* Wider vectors where the CPU has them, chosen when the module loads (GCC's ifunc). */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* One worker: its maps in chunks; each chunk is scaled in one flat loop, then the
 * blocks of the seeds that fall in it are zeroed while it is still in cache. */
#define DEFINE_RUN(T)                                                                      \
    VECTOR_CLONES static void run_##T(const Job *job) {                                                  \
        const Geometry *g = &job->g;                                                       \
        Runs runs = block_runs(g);                                                         \
        const T s = (T)job->scale, zero = (T)job->zero;                                    \
        const int64_t C = job->channels, M = g->map_size, P = g->positions;                \
        int64_t step = CHUNK_UNITS / M > 0 ? CHUNK_UNITS / M : 1;                          \
        int64_t cursor = 0;                                                                \
        for (int64_t m0 = job->map_begin; m0 < job->map_end; m0 += step) {                 \
            int64_t m1 = m0 + step < job->map_end ? m0 + step : job->map_end;              \
            const T *in = (const T *)job->src + m0 * M;                                    \
            T *out = (T *)job->dst + m0 * M;                                               \
            int64_t n = (m1 - m0) * M;                                                     \
            if ((const void *)in == (const void *)out)                                     \
                for (int64_t i = 0; i < n; ++i) out[i] *= s;                               \
            else                                                                           \
                for (int64_t i = 0; i < n; ++i) out[i] = in[i] * s;                        \
            int64_t k0 = job->shared ? m0 / C : m0, k1 = job->shared ? (m1 - 1) / C : m1 - 1; \
            if (cursor == 0) cursor = lower_bound(job->seeds, 0, job->n_seeds, k0 * P);    \
            cursor = advance(job->seeds, cursor, job->n_seeds, k0 * P);                    \
            for (int64_t i = cursor; i < job->n_seeds && job->seeds[i] < (k1 + 1) * P; ++i) { \
                int64_t key = job->seeds[i] / P, corner = job->seeds[i] - key * P;         \
                int64_t first = job->shared ? key * C : key, last = job->shared ? first + C : key + 1; \
                if (first < m0) first = m0;                                                \
                if (last > m1) last = m1;                                                  \
                for (int64_t m = first; m < last; ++m)                                     \
                    zero_block_##T((T *)job->dst + m * M, corner, g, &runs, zero);         \
            }                                                                              \
        }                                                                                  \
    }

DEFINE_RUN(float)
DEFINE_RUN(double)

static void run_job(const Job *job) {
    if (job->dtype == 0)
        run_float(job);
    else
        run_double(job);
}

static int parse_geometry(PyObject *side, PyObject *block, Geometry *g) {
    if (!PyArg_ParseTuple(side, "LLL", &g->side[0], &g->side[1], &g->side[2])) return 0;
    if (!PyArg_ParseTuple(block, "LLL", &g->block[0], &g->block[1], &g->block[2])) return 0;
    g->map_size = 1;
    g->positions = 1;
    for (int i = 0; i < 3; ++i) {
        if (g->block[i] < 1 || g->block[i] > g->side[i]) {
            PyErr_Format(PyExc_ValueError, "block side %lld does not fit map side %lld",
                         (long long)g->block[i], (long long)g->side[i]);
            return 0;
        }
        g->valid[i] = g->side[i] - g->block[i] + 1;
        g->map_size *= g->side[i];
        g->positions *= g->valid[i];
    }
    return 1;
}

/* apply(src, dst, dtype, maps, channels, shared, side, block, seeds, n_seeds, scale, threads)
 * Pointers are integers (Tensor.data_ptr()); the caller guarantees contiguity and sizes. */
static PyObject *apply(PyObject *self, PyObject *args) {
    unsigned long long src, dst, seeds;
    int dtype, shared, threads;
    long long maps, channels, n_seeds;
    double scale;
    PyObject *side, *block;
    Job base;
    (void)self;
    if (!PyArg_ParseTuple(args, "KKiLLiOOKLdi", &src, &dst, &dtype, &maps, &channels, &shared,
                          &side, &block, &seeds, &n_seeds, &scale, &threads))
        return NULL;
    if (!parse_geometry(side, block, &base.g)) return NULL;
    if (dtype != 0 && dtype != 1) {
        PyErr_Format(PyExc_ValueError, "dtype code must be 0 (float32) or 1 (float64), got %d",
                     dtype);
        return NULL;
    }
    base.src = (const void *)(uintptr_t)src;
    base.dst = (void *)(uintptr_t)dst;
    base.dtype = dtype;
    base.seeds = (const int64_t *)(uintptr_t)seeds;
    base.n_seeds = n_seeds;
    base.channels = channels;
    base.shared = shared;
    base.scale = scale;
    base.zero = 0.0;
    if (threads < 1) threads = 1;
    if (threads > maps) threads = (int)(maps > 0 ? maps : 1);
    Py_BEGIN_ALLOW_THREADS
    /* On torch's own OpenMP threads: once torch is loaded, libgomp.so.1 resolves to its
     * copy, so no second pool spins against the one torch's ops just left. */
#pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int t = 0; t < threads; ++t) {
        Job job = base;
        job.map_begin = maps * t / threads;
        job.map_end = maps * (t + 1) / threads;
        run_job(&job);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* count(seeds, n_seeds, side, block) -> distinct units covered, summed over keys. */
static PyObject *count(PyObject *self, PyObject *args) {
    unsigned long long seeds_ptr;
    long long n_seeds;
    PyObject *side, *block;
    Geometry g;
    (void)self;
    if (!PyArg_ParseTuple(args, "KLOO", &seeds_ptr, &n_seeds, &side, &block)) return NULL;
    if (!parse_geometry(side, block, &g)) return NULL;
    const int64_t *seeds = (const int64_t *)(uintptr_t)seeds_ptr;
    int64_t area = g.block[0] * g.block[1] * g.block[2];
    Runs runs = block_runs(&g);
    int64_t total = 0;
    char *buffer = NULL;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    int64_t i = 0;
    while (i < n_seeds) {
        int64_t key = seeds[i] / g.positions, begin = key * g.positions;
        int64_t j = i + 1;
        while (j < n_seeds && seeds[j] < begin + g.positions) ++j;
        if (j - i == 1) {
            total += area;
        } else {
            if (buffer == NULL && (buffer = malloc((size_t)g.map_size)) == NULL) {
                failed = 1;
                break;
            }
            memset(buffer, 1, (size_t)g.map_size);
            for (int64_t s = i; s < j; ++s) zero_block_byte(buffer, seeds[s] - begin, &g, &runs, 0);
            for (int64_t u = 0; u < g.map_size; ++u) total += buffer[u] == 0;
        }
        i = j;
    }
    free(buffer);
    Py_END_ALLOW_THREADS
    if (failed) return PyErr_NoMemory();
    return PyLong_FromLongLong((long long)total);
}

static PyMethodDef methods[] = {
    {"apply", apply, METH_VARARGS, "dst = src * scale with the seeds' blocks zeroed."},
    {"count", count, METH_VARARGS, "Distinct units covered by the seeds' blocks."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "convdrop._kernel",
    "Fused DropBlock kernel for contiguous float32/float64 CPU tensors.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernel(void) { return PyModule_Create(&module); }
