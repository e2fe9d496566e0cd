/* SHA-256 of each row's canonical encoding (integrity/rows.py), without the GIL.
 *
 * rows.py joins a table's columns into one Arrow binary array (one value per row) and hashes
 * each value. hashlib keeps the GIL for inputs under 2 KiB, so hashing rows one by one in
 * Python held the collector's GIL for ~1 us a row; this hashes them all with the GIL released,
 * with the same OpenSSL that hashlib uses.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <string.h>

/* slices(data, offsets, first, n) -> list of n 32-byte digests: value i is
 * data[offsets[first + i]:offsets[first + i + 1]] (int32 offsets, as Arrow's binary). */
static PyObject *slices(PyObject *module, PyObject *args) {
    Py_buffer data, offsets;
    Py_ssize_t first, n;
    if (!PyArg_ParseTuple(args, "y*y*nn", &data, &offsets, &first, &n)) return NULL;
    PyObject *out = NULL;
    unsigned char *md = NULL;
    EVP_MD_CTX *ctx = NULL;
    const int32_t *off = (const int32_t *)offsets.buf;
    Py_ssize_t noff = offsets.len / 4;
    if (first < 0 || n < 0 || first + n + 1 > noff) {
        PyErr_SetString(PyExc_ValueError, "offsets out of range");
        goto done;
    }
    for (Py_ssize_t i = first; i < first + n; i++) {
        if (off[i] < 0 || off[i] > off[i + 1] || off[i + 1] > data.len) {
            PyErr_SetString(PyExc_ValueError, "offsets out of range");
            goto done;
        }
    }
    md = PyMem_Malloc(n ? 32 * n : 1);
    ctx = EVP_MD_CTX_new();
    if (!md || !ctx) {
        PyErr_NoMemory();
        goto done;
    }
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS
    const EVP_MD *sha = EVP_sha256();
    const unsigned char *d = (const unsigned char *)data.buf;
    for (Py_ssize_t i = 0; i < n && ok; i++) {
        int32_t a = off[first + i], b = off[first + i + 1];
        ok = EVP_DigestInit_ex(ctx, sha, NULL) && EVP_DigestUpdate(ctx, d + a, b - a)
             && EVP_DigestFinal_ex(ctx, md + 32 * i, NULL);
    }
    Py_END_ALLOW_THREADS
    if (!ok) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL SHA-256 failed");
        goto done;
    }
    out = PyList_New(n);
    if (!out) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *b = PyBytes_FromStringAndSize((const char *)md + 32 * i, 32);
        if (!b) { Py_CLEAR(out); goto done; }
        PyList_SET_ITEM(out, i, b);
    }
done:
    if (ctx) EVP_MD_CTX_free(ctx);
    PyMem_Free(md);
    PyBuffer_Release(&data);
    PyBuffer_Release(&offsets);
    return out;
}

static PyMethodDef methods[] = {
    {"slices", slices, METH_VARARGS,
     "slices(data, offsets, first, n) -> [sha256(data[offsets[first+i]:offsets[first+i+1]])]"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_digests", "SHA-256 of row encodings without the GIL.", -1, methods,
};

PyMODINIT_FUNC PyInit__digests(void) { return PyModule_Create(&module); }
