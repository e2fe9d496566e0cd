/* Row digests (integrity/rows.py) straight from Arrow buffers, without the GIL.
 *
 * rows.py hands over each column's buffers; this writes each row's canonical encoding into a
 * small scratch buffer (long values go to SHA-256 directly) and hashes it, so no joined copy
 * of the table is made. On the benchmark load the Arrow join and casts this replaces made the
 * digests 4.2-5.4 us a span; this takes 2.3, of which SHA-256 itself is ~1.1. The hash is
 * OpenSSL's, the one hashlib uses; the collector's other threads run while it works.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <string.h>

/* Column kinds: the same numbers as rows.py's _FIXED ... _UINT. */
enum { FIXED, STRING, BOOL, INT, UINT };

typedef struct {
    int kind, width;            /* width: bytes a value (FIXED, INT, UINT) or an offset (STRING) */
    Py_ssize_t offset;          /* the array's offset, in values */
    Py_ssize_t values;          /* how many values the buffers hold (offset included) */
    Py_buffer valid, offsets, data; /* .buf NULL where rows.py passed None */
} Column;

/* Values at least this long go to SHA-256 directly instead of through the scratch buffer
 * (64, 256 and 1024 measured the same on the benchmark load); DIRECT <= SCRATCH. */
#define DIRECT 256
#define SCRATCH 8192
_Static_assert(DIRECT <= SCRATCH, "put() copies values under DIRECT bytes into the scratch");

typedef struct {
    EVP_MD_CTX *ctx;
    unsigned char buf[SCRATCH];
    size_t fill;
    int ok;
} Sink;

static void flush(Sink *s) {
    if (s->fill) s->ok &= EVP_DigestUpdate(s->ctx, s->buf, s->fill);
    s->fill = 0;
}

static void put(Sink *s, const void *p, size_t len) {
    if (len >= DIRECT) {
        flush(s);
        s->ok &= EVP_DigestUpdate(s->ctx, p, len);
        return;
    }
    if (s->fill + len > SCRATCH) flush(s);
    memcpy(s->buf + s->fill, p, len);
    s->fill += len;
}

static void put_byte(Sink *s, unsigned char b) {
    if (s->fill == SCRATCH) flush(s);
    s->buf[s->fill++] = b;
}

static void put_zeros(Sink *s, size_t len) {
    static const unsigned char zeros[256];
    for (; len > sizeof zeros; len -= sizeof zeros) put(s, zeros, sizeof zeros);
    put(s, zeros, len);
}

/* Decimal text, as Arrow's cast to string writes it. */
static void put_decimal(Sink *s, uint64_t u, int negative) {
    char text[21];
    char *end = text + sizeof text, *p = end;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (negative) *--p = '-';
    put(s, p, (size_t)(end - p));
}

static int bit(const unsigned char *bits, Py_ssize_t i) { return (bits[i >> 3] >> (i & 7)) & 1; }

/* Value i of a buffer of w-byte integers, loaded with memcpy: a buffer from Python need not be
 * aligned. */
static int64_t load_signed(const unsigned char *p, Py_ssize_t i, int w) {
    int8_t a; int16_t b; int32_t c; int64_t d;
    switch (w) {
    case 1: memcpy(&a, p + i, 1); return a;
    case 2: memcpy(&b, p + 2 * i, 2); return b;
    case 4: memcpy(&c, p + 4 * i, 4); return c;
    default: memcpy(&d, p + 8 * i, 8); return d;
    }
}

static uint64_t load_unsigned(const unsigned char *p, Py_ssize_t i, int w) {
    uint8_t a; uint16_t b; uint32_t c; uint64_t d;
    switch (w) {
    case 1: memcpy(&a, p + i, 1); return a;
    case 2: memcpy(&b, p + 2 * i, 2); return b;
    case 4: memcpy(&c, p + 4 * i, 4); return c;
    default: memcpy(&d, p + 8 * i, 8); return d;
    }
}

/* Appends column c's value in row i (0xFF-prefixed unless fixed); 0 if its buffers are short. */
static int put_value(Sink *s, const Column *c, Py_ssize_t i) {
    Py_ssize_t at = c->offset + i;
    int valid = !c->valid.buf || bit(c->valid.buf, at);
    const unsigned char *d = c->data.buf;
    Py_ssize_t w = c->width;
    if (c->kind == FIXED) {
        if (!valid) {
            put_zeros(s, (size_t)w + 1);
            return 1;
        }
        if (at >= c->values) return 0;
        put_byte(s, 0x01);
        put(s, d + at * w, (size_t)w);
        return 1;
    }
    put_byte(s, 0xFF);
    if (!valid) {
        put_byte(s, 0xFE);
        return 1;
    }
    switch (c->kind) {
    case STRING: {
        if (at >= c->values) return 0;
        int64_t a = load_signed(c->offsets.buf, at, (int)w);
        int64_t b = load_signed(c->offsets.buf, at + 1, (int)w);
        if (a < 0 || b < a || b > c->data.len) return 0;
        if (b > a) put(s, d + a, (size_t)(b - a)); /* d is NULL where there is no data */
        return 1;
    }
    case BOOL:
        if (at >= c->values) return 0;
        if (bit(d, at)) put(s, "true", 4);
        else put(s, "false", 5);
        return 1;
    case INT: {
        if (at >= c->values) return 0;
        int64_t v = load_signed(d, at, (int)w);
        /* 0 - (uint64_t)v is |v| for every v, INT64_MIN included */
        put_decimal(s, v < 0 ? 0 - (uint64_t)v : (uint64_t)v, v < 0);
        return 1;
    }
    default: { /* UINT */
        if (at >= c->values) return 0;
        put_decimal(s, load_unsigned(d, at, (int)w), 0);
        return 1;
    }
    }
}

static int get_buffer(PyObject *o, Py_buffer *view) {
    if (o == Py_None) {
        view->buf = NULL;
        view->obj = NULL;
        view->len = 0;
        return 0;
    }
    return PyObject_GetBuffer(o, view, PyBUF_SIMPLE);
}

static int read_column(PyObject *spec, Column *c, Py_ssize_t n) {
    PyObject *valid, *offsets, *data;
    if (!PyArg_ParseTuple(spec, "iinOOO", &c->kind, &c->width, &c->offset, &valid, &offsets,
                          &data))
        return -1;
    int w = c->width;
    int width_ok = c->kind == FIXED ? w > 0
                   : c->kind == STRING ? w == 4 || w == 8
                   : c->kind == BOOL ? w == 0
                   : (c->kind == INT || c->kind == UINT) && (w == 1 || w == 2 || w == 4 || w == 8);
    /* The caps keep offset + n (+ 1) from overflowing. */
    Py_ssize_t cap = (Py_ssize_t)1 << 48;
    if (!width_ok || c->offset < 0 || c->offset > cap || n > cap) {
        PyErr_SetString(PyExc_ValueError, "bad column kind, width or offset");
        return -1;
    }
    if (get_buffer(valid, &c->valid) < 0) return -1;
    if (get_buffer(offsets, &c->offsets) < 0) return -1;
    if (get_buffer(data, &c->data) < 0) return -1;
    if (c->valid.buf && (c->offset + n + 7) / 8 > c->valid.len) {
        PyErr_SetString(PyExc_ValueError, "validity bitmap shorter than the column");
        return -1;
    }
    /* Checked against each value read (a column of nulls may come with short buffers) */
    c->values = c->kind == STRING ? (c->offsets.len / w ? c->offsets.len / w - 1 : 0)
                : c->kind == BOOL ? c->data.len * 8
                : c->data.len / w;
    return 0;
}

static void release_column(Column *c) {
    if (c->valid.obj) PyBuffer_Release(&c->valid);
    if (c->offsets.obj) PyBuffer_Release(&c->offsets);
    if (c->data.obj) PyBuffer_Release(&c->data);
}

/* rows(n, columns) -> list of n 32-byte digests, SHA-256(0x00 || E) of each row's encoding.
 * columns: (kind, width, offset, validity, offsets, data) tuples in encoding order (fixed
 * columns first); buffers are Arrow's (anything with the buffer protocol) or None. */
static PyObject *rows(PyObject *module, PyObject *args) {
    Py_ssize_t n;
    PyObject *specs;
    if (!PyArg_ParseTuple(args, "nO", &n, &specs)) return NULL;
    PyObject *seq = PySequence_Fast(specs, "columns must be a sequence");
    if (!seq) return NULL;
    PyObject *out = NULL;
    unsigned char *md = NULL;
    Sink *sink = NULL;
    EVP_MD *sha = NULL;
    int ok = 1, in_range = 1;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(seq), ready = 0;
    Column *cols = PyMem_Calloc(k ? k : 1, sizeof *cols);
    if (!cols) {
        PyErr_NoMemory();
        goto done;
    }
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "negative row count");
        goto done;
    }
    for (; ready < k; ready++) {
        if (read_column(PySequence_Fast_GET_ITEM(seq, ready), &cols[ready], n) < 0) {
            release_column(&cols[ready]);
            goto done;
        }
    }
    md = PyMem_Malloc(n ? 32 * n : 1);
    sink = PyMem_Calloc(1, sizeof *sink);
    if (!md || !sink || !(sink->ctx = EVP_MD_CTX_new())) {
        PyErr_NoMemory();
        goto done;
    }
    /* Fetched once: EVP_sha256() makes every EVP_DigestInit_ex fetch it again, under a lock
     * (13% of the time on the benchmark load). */
    if (!(sha = EVP_MD_fetch(NULL, "SHA256", NULL))) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL has no SHA-256");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    sink->ok = 1;
    for (Py_ssize_t i = 0; i < n && sink->ok && in_range; i++) {
        sink->fill = 0;
        sink->ok &= EVP_DigestInit_ex(sink->ctx, sha, NULL);
        put_byte(sink, 0x00); /* RFC 6962 leaf prefix */
        for (Py_ssize_t j = 0; j < k && in_range; j++) in_range = put_value(sink, &cols[j], i);
        flush(sink);
        sink->ok &= EVP_DigestFinal_ex(sink->ctx, md + 32 * i, NULL);
    }
    ok = sink->ok;
    Py_END_ALLOW_THREADS
    if (!in_range) {
        PyErr_SetString(PyExc_ValueError, "a column's buffers are shorter than its values");
        goto done;
    }
    if (!ok) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL SHA-256 failed");
        goto done;
    }
    out = PyList_New(n);
    if (!out) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *b = PyBytes_FromStringAndSize((const char *)md + 32 * i, 32);
        if (!b) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, b);
    }
done:
    EVP_MD_free(sha);
    if (sink && sink->ctx) EVP_MD_CTX_free(sink->ctx);
    PyMem_Free(sink);
    PyMem_Free(md);
    for (Py_ssize_t j = 0; j < ready; j++) release_column(&cols[j]);
    PyMem_Free(cols);
    Py_DECREF(seq);
    return out;
}

static PyMethodDef methods[] = {
    {"rows", rows, METH_VARARGS,
     "rows(n, columns) -> [sha256(0x00 || encoding of row i)]; see integrity/rows.py"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_digests", "Row digests from Arrow buffers, without the GIL.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__digests(void) { return PyModule_Create(&module); }
