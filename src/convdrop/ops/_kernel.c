/* Fused DropBlock kernel for contiguous CPU tensors (float32 and float64).
 *
 * The PyTorch-level path writes x * scale in one pass and then zeroes the dropped
 * blocks by index in a second, scattered pass: by then the output has left the
 * cache, so every touched cache line is read and written again. Here the maps are
 * scaled a chunk at a time and each chunk's blocks are zeroed while it is still in
 * L1/L2, so the tensor streams through memory once: one read of the source and one
 * write of the destination, as for ``x * scalar``.
 *
 * Geometry (shared with convdrop.ops.sampling): a tensor (N, C, D, H, W) (1d and 2d
 * maps are padded with leading sides of 1) has maps of D*H*W contiguous units. A
 * seed id s names key s / P and block corner s % P (row-major over the valid region
 * (D-kd+1, H-kh+1, W-kw+1), P its size); the block spans [corner, corner + k) per
 * dim. A key is a map (n * C + c), or a sample n when masks are shared by channels.
 * Seeds are sorted, so a map's seeds are neighbours.
 *
 * No torch headers: the module takes data pointers as integers, so it compiles in a
 * second and works with any torch. Threads come from OpenMP; once torch is loaded,
 * libgomp.so.1 resolves to torch's copy, so the kernel runs on torch's own pool
 * rather than a second one spinning against it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Units scaled before their blocks are zeroed: small enough to stay in L2. */
#define CHUNK_UNITS 16384

typedef struct {
    int64_t side[3];   /* D, H, W */
    int64_t block[3];  /* kd, kh, kw, each clipped to its side */
    int64_t valid[3];  /* side - block + 1 */
    int64_t map_size;  /* D * H * W */
    int64_t positions; /* valid[0] * valid[1] * valid[2] */
    int64_t area;      /* kd * kh * kw */
    /* The block as runs of contiguous units: one per (d, h) row, merged when the block
     * spans whole rows (or planes). */
    int64_t n_runs, run_length;
    int64_t *run_start;   /* (n_runs,) offset of each run from the block's first unit */
    int64_t *corner_unit; /* (positions,) offset of each corner's first unit in its map */
} Plan;

static void plan_free(Plan *p) {
    free(p->run_start);
    free(p->corner_unit);
    p->run_start = p->corner_unit = NULL;
}

/* Parse the (D, H, W) sides and block and fill the tables; 0 with an exception set. */
static int plan_init(PyObject *side, PyObject *block, Plan *p) {
    memset(p, 0, sizeof *p);
    if (!PyArg_ParseTuple(side, "LLL", &p->side[0], &p->side[1], &p->side[2])) return 0;
    if (!PyArg_ParseTuple(block, "LLL", &p->block[0], &p->block[1], &p->block[2])) return 0;
    p->map_size = p->positions = p->area = 1;
    for (int i = 0; i < 3; ++i) {
        if (p->block[i] < 1 || p->block[i] > p->side[i]) {
            PyErr_Format(PyExc_ValueError, "block side %lld does not fit map side %lld",
                         (long long)p->block[i], (long long)p->side[i]);
            return 0;
        }
        p->valid[i] = p->side[i] - p->block[i] + 1;
        p->map_size *= p->side[i];
        p->positions *= p->valid[i];
        p->area *= p->block[i];
    }
    int64_t rows_d = p->block[0], rows_h = p->block[1], length = p->block[2];
    if (length == p->side[2]) { /* whole rows: one run per plane */
        length *= rows_h;
        rows_h = 1;
        if (p->block[1] == p->side[1]) { /* whole planes: one run */
            length *= rows_d;
            rows_d = 1;
        }
    }
    p->n_runs = rows_d * rows_h;
    p->run_length = length;
    p->run_start = malloc((size_t)p->n_runs * sizeof(int64_t));
    p->corner_unit = malloc((size_t)p->positions * sizeof(int64_t));
    if (p->run_start == NULL || p->corner_unit == NULL) {
        plan_free(p);
        PyErr_NoMemory();
        return 0;
    }
    for (int64_t d = 0, r = 0; d < rows_d; ++d)
        for (int64_t h = 0; h < rows_h; ++h) p->run_start[r++] = (d * p->side[1] + h) * p->side[2];
    for (int64_t d = 0, c = 0; d < p->valid[0]; ++d)
        for (int64_t h = 0; h < p->valid[1]; ++h)
            for (int64_t w = 0; w < p->valid[2]; ++w)
                p->corner_unit[c++] = (d * p->side[1] + h) * p->side[2] + w;
    return 1;
}

/* Set the block starting at ``first`` to ``value``. Zeroing passes a run-time 0, so
 * that the short loops stay inline stores instead of becoming memset calls. */
#define DEFINE_FILL_BLOCK(T)                                                    \
    static inline void fill_block_##T(T *first, const Plan *p, T value) {      \
        for (int64_t r = 0; r < p->n_runs; ++r) {                              \
            T *run = first + p->run_start[r];                                  \
            for (int64_t i = 0; i < p->run_length; ++i) run[i] = value;        \
        }                                                                      \
    }

typedef unsigned char byte;
DEFINE_FILL_BLOCK(float)
DEFINE_FILL_BLOCK(double)
DEFINE_FILL_BLOCK(byte)

typedef struct {
    const void *src;
    void *dst;
    const int64_t *seeds;
    int64_t n_seeds;
    int64_t channels;
    int shared;
    double scale;
    double zero; /* 0.0, see fill_block */
    const Plan *plan;
    int64_t map_begin, map_end; /* this worker's maps */
} Job;

/* First index i in [0, n) with seeds[i] >= value (n if none). */
static int64_t lower_bound(const int64_t *seeds, int64_t n, int64_t value) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (seeds[mid] < value)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Wider vectors where the CPU has them, chosen when the module loads (GCC's ifunc). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* One worker: its maps in chunks; each chunk is scaled in one flat loop, then the
 * blocks of the seeds that fall in it are zeroed while it is still in cache. */
#define DEFINE_RUN(T)                                                                     \
    VECTOR_CLONES static void run_##T(const Job *job) {                                   \
        const Plan *p = job->plan;                                                        \
        const T s = (T)job->scale, zero = (T)job->zero;                                   \
        const int64_t C = job->channels, M = p->map_size, P = p->positions;               \
        const int64_t step = CHUNK_UNITS / M > 0 ? CHUNK_UNITS / M : 1;                   \
        const int64_t *seeds = job->seeds;                                                \
        int64_t first_key = job->shared ? job->map_begin / C : job->map_begin;            \
        int64_t cursor = lower_bound(seeds, job->n_seeds, first_key * P);                 \
        for (int64_t m0 = job->map_begin; m0 < job->map_end; m0 += step) {                \
            int64_t m1 = m0 + step < job->map_end ? m0 + step : job->map_end;             \
            const T *in = (const T *)job->src + m0 * M;                                   \
            T *out = (T *)job->dst + m0 * M;                                              \
            int64_t n = (m1 - m0) * M;                                                    \
            if ((const void *)in == (const void *)out)                                    \
                for (int64_t i = 0; i < n; ++i) out[i] *= s;                              \
            else                                                                          \
                for (int64_t i = 0; i < n; ++i) out[i] = in[i] * s;                       \
            int64_t k0 = job->shared ? m0 / C : m0;                                       \
            int64_t k_end = job->shared ? (m1 - 1) / C + 1 : m1;                          \
            while (cursor < job->n_seeds && seeds[cursor] < k0 * P) ++cursor;             \
            for (int64_t i = cursor; i < job->n_seeds && seeds[i] < k_end * P; ++i) {     \
                int64_t key = seeds[i] / P;                                               \
                int64_t unit = p->corner_unit[seeds[i] - key * P];                        \
                int64_t first = job->shared ? key * C : key;                              \
                int64_t last = job->shared ? first + C : key + 1;                         \
                if (first < m0) first = m0;                                               \
                if (last > m1) last = m1;                                                 \
                for (int64_t m = first; m < last; ++m)                                    \
                    fill_block_##T((T *)job->dst + m * M + unit, p, zero);                \
            }                                                                             \
        }                                                                                 \
    }

DEFINE_RUN(float)
DEFINE_RUN(double)

/* Refuse seeds that would index outside ``keys`` maps of ``positions`` corners: each id
 * in [0, keys * positions) and the ids sorted (the workers' cursors assume it). The
 * check reads the seeds once, a few KB against the tensor's MB. 0 with an exception. */
static int check_seeds(const int64_t *seeds, int64_t n, int64_t keys, int64_t positions) {
    if (n < 0 || keys < 0) {
        PyErr_Format(PyExc_ValueError, "seed count %lld and key count %lld must be >= 0",
                     (long long)n, (long long)keys);
        return 0;
    }
    if (n == 0) return 1;
    if (seeds == NULL) {
        PyErr_SetString(PyExc_ValueError, "seeds pointer is NULL");
        return 0;
    }
    for (int64_t i = 1; i < n; ++i) {
        if (seeds[i] < seeds[i - 1]) {
            PyErr_Format(PyExc_ValueError, "seeds must be sorted: id %lld follows %lld",
                         (long long)seeds[i], (long long)seeds[i - 1]);
            return 0;
        }
    }
    if (seeds[0] < 0 || seeds[n - 1] >= keys * positions) {
        PyErr_Format(PyExc_ValueError, "seed ids must lie in [0, %lld), got %lld .. %lld",
                     (long long)(keys * positions), (long long)seeds[0],
                     (long long)seeds[n - 1]);
        return 0;
    }
    return 1;
}

static int clamp_threads(int threads, int64_t work) {
    if (threads < 1) threads = 1;
    if (threads > work) threads = (int)(work > 0 ? work : 1);
    return threads;
}

/* apply(src, src_numel, dst, dst_numel, dtype, maps, channels, shared, side, block, seeds,
 *       n_seeds, scale, threads)
 * dtype 0 is float32, 1 float64. Pointers are integers (Tensor.data_ptr()) of contiguous
 * buffers of the given element counts; everything else is checked here, so a wrong
 * argument is a ValueError rather than a write out of range. */
static PyObject *apply(PyObject *self, PyObject *args) {
    unsigned long long src, dst, seeds;
    int dtype, shared, threads;
    long long src_numel, dst_numel, maps, channels, n_seeds;
    double scale;
    PyObject *side, *block;
    Plan plan;
    (void)self;
    if (!PyArg_ParseTuple(args, "KLKLiLLiOOKLdi", &src, &src_numel, &dst, &dst_numel, &dtype,
                          &maps, &channels, &shared, &side, &block, &seeds, &n_seeds, &scale,
                          &threads))
        return NULL;
    if (dtype != 0 && dtype != 1) {
        PyErr_Format(PyExc_ValueError, "dtype code must be 0 (float32) or 1 (float64), got %d",
                     dtype);
        return NULL;
    }
    if (maps < 0 || channels < 1 || (shared && maps % channels != 0)) {
        PyErr_Format(PyExc_ValueError, "maps %lld must be >= 0 and a multiple of channels %lld",
                     maps, channels);
        return NULL;
    }
    if (!plan_init(side, block, &plan)) return NULL;
    if (maps * plan.map_size > src_numel || maps * plan.map_size > dst_numel ||
        (maps > 0 && (src == 0 || dst == 0))) {
        PyErr_Format(PyExc_ValueError,
                     "%lld maps of %lld units do not fit buffers of %lld and %lld elements",
                     maps, (long long)plan.map_size, src_numel, dst_numel);
        plan_free(&plan);
        return NULL;
    }
    if (!check_seeds((const int64_t *)(uintptr_t)seeds, n_seeds, shared ? maps / channels : maps,
                     plan.positions)) {
        plan_free(&plan);
        return NULL;
    }
    Job base = {(const void *)(uintptr_t)src, (void *)(uintptr_t)dst,
                (const int64_t *)(uintptr_t)seeds, n_seeds, channels, shared, scale, 0.0,
                &plan, 0, 0};
    threads = clamp_threads(threads, maps);
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int t = 0; t < threads; ++t) {
        Job job = base;
        job.map_begin = maps * t / threads;
        job.map_end = maps * (t + 1) / threads;
        if (dtype == 0)
            run_float(&job);
        else
            run_double(&job);
    }
    Py_END_ALLOW_THREADS
    plan_free(&plan);
    Py_RETURN_NONE;
}

/* Units covered by two blocks with corner ids a and b: 2 * area less their overlap. */
static int64_t pair_units(int64_t a, int64_t b, const Plan *p) {
    int64_t overlap = 1;
    for (int i = 2; i >= 0; --i) {
        int64_t gap = a % p->valid[i] - b % p->valid[i];
        if (gap < 0) gap = -gap;
        overlap *= gap < p->block[i] ? p->block[i] - gap : 0;
        a /= p->valid[i];
        b /= p->valid[i];
    }
    return 2 * p->area - overlap;
}

/* Distinct units covered by the seeds [begin, end), which start at a new key. */
static int64_t count_range(const int64_t *seeds, int64_t begin, int64_t end, const Plan *p,
                           byte *buffer) {
    const int64_t P = p->positions;
    int64_t total = 0;
    for (int64_t i = begin; i < end;) {
        int64_t key = seeds[i] / P, base = key * P, j = i + 1;
        while (j < end && seeds[j] < base + P) ++j;
        if (j - i == 1) {
            total += p->area;
        } else if (j - i == 2) {
            total += pair_units(seeds[i] - base, seeds[i + 1] - base, p);
        } else { /* three or more blocks: paint them and count */
            memset(buffer, 0, (size_t)p->map_size);
            for (int64_t s = i; s < j; ++s)
                fill_block_byte(buffer + p->corner_unit[seeds[s] - base], p, 1);
            for (int64_t u = 0; u < p->map_size; ++u) total += buffer[u];
        }
        i = j;
    }
    return total;
}

/* count(seeds, n_seeds, keys, side, block, threads) -> distinct units covered, over all
 * ``keys`` maps (or samples, when channels share masks). */
static PyObject *count(PyObject *self, PyObject *args) {
    unsigned long long seeds_ptr;
    long long n_seeds, keys;
    int threads;
    PyObject *side, *block;
    Plan plan;
    (void)self;
    if (!PyArg_ParseTuple(args, "KLLOOi", &seeds_ptr, &n_seeds, &keys, &side, &block, &threads))
        return NULL;
    if (!plan_init(side, block, &plan)) return NULL;
    const int64_t *seeds = (const int64_t *)(uintptr_t)seeds_ptr;
    if (!check_seeds(seeds, n_seeds, keys, plan.positions)) {
        plan_free(&plan);
        return NULL;
    }
    threads = clamp_threads(threads, n_seeds / 4096 + 1); /* a thread per 4096 seeds at most */
    int64_t total = 0;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for num_threads(threads) schedule(static, 1) reduction(+ : total, failed)
    for (int t = 0; t < threads; ++t) {
        /* Each share starts at the first seed of a key, so no key is split. */
        int64_t begin = n_seeds * t / threads, end = n_seeds * (t + 1) / threads;
        while (begin > 0 && begin < n_seeds &&
               seeds[begin] / plan.positions == seeds[begin - 1] / plan.positions)
            ++begin;
        while (end < n_seeds && end > 0 &&
               seeds[end] / plan.positions == seeds[end - 1] / plan.positions)
            ++end;
        byte *buffer = malloc((size_t)plan.map_size);
        if (buffer == NULL) {
            failed += 1;
        } else {
            total += count_range(seeds, begin, end, &plan, buffer);
            free(buffer);
        }
    }
    Py_END_ALLOW_THREADS
    plan_free(&plan);
    if (failed) return PyErr_NoMemory();
    return PyLong_FromLongLong((long long)total);
}

static PyMethodDef methods[] = {
    {"apply", apply, METH_VARARGS, "dst = src * scale with the seeds' blocks zeroed."},
    {"count", count, METH_VARARGS, "Distinct units covered by the seeds' blocks."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "convdrop.ops._kernel",
    "Fused DropBlock kernel for contiguous float32/float64 CPU tensors.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernel(void) { return PyModule_Create(&module); }
