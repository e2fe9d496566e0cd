/* The compiled span-to-row converter: ExportTraceServiceRequest bytes -> the generic columns
 * of the `spans` record as Arrow buffers, with the normalizer (Python) called once per span.
 *
 * records.append_request is the reference: this module gives the same rows (tests compare
 * every column on generated requests), without a protobuf object or a Python tuple per span.
 * It reads the protobuf wire format directly and handles the shapes exporters send; anything
 * else (bytes or strindex values, a singular message field repeated, a wire type that does
 * not match the field, groups, deep nesting) makes `add` return False before it has added
 * anything, and the caller converts that request with the reference code.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

#define MAX_DEPTH 48
#define HOUR_NS 3600000000000ULL

/* ---- wire reading ------------------------------------------------------------------------ */

typedef struct { const uint8_t *p, *end; } Rd;

static inline int rd_varint(Rd *r, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 70 && r->p < r->end; shift += 7) {
        uint8_t b = *r->p++;
        if (shift == 63 && b > 1) return 0;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) { *v = x; return 1; }
    }
    return 0;
}

static inline int rd_tag(Rd *r, uint32_t *field, uint32_t *wt) {
    uint64_t v;
    if (!rd_varint(r, &v) || (v >> 3) == 0 || (v >> 3) > 0x1fffffff) return 0;
    *field = (uint32_t)(v >> 3);
    *wt = (uint32_t)(v & 7);
    return 1;
}

static inline int rd_len(Rd *r, Rd *sub) {
    uint64_t n;
    if (!rd_varint(r, &n) || n > (uint64_t)(r->end - r->p)) return 0;
    sub->p = r->p;
    sub->end = r->p + n;
    r->p += n;
    return 1;
}

static inline int rd_fixed64(Rd *r, uint64_t *v) {
    if (r->end - r->p < 8) return 0;
    memcpy(v, r->p, 8);  /* little endian on every platform this runs on */
    r->p += 8;
    return 1;
}

static inline int rd_fixed32(Rd *r, uint32_t *v) {
    if (r->end - r->p < 4) return 0;
    memcpy(v, r->p, 4);
    r->p += 4;
    return 1;
}

static int rd_skip(Rd *r, uint32_t wt) {
    uint64_t v;
    uint32_t f;
    Rd sub;
    switch (wt) {
    case 0: return rd_varint(r, &v);
    case 1: return rd_fixed64(r, &v);
    case 2: return rd_len(r, &sub);
    case 5: return rd_fixed32(r, &f);
    default: return 0;  /* groups: the reference code handles them */
    }
}

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF), as both upb and
 * Python's decoder require. */
static int utf8_ok(const uint8_t *s, const uint8_t *end) {
    while (s < end) {
        if (end - s >= 8) {  /* ASCII runs, 8 bytes at a time */
            uint64_t w;
            memcpy(&w, s, 8);
            if (!(w & 0x8080808080808080ULL)) { s += 8; continue; }
        }
        uint8_t c = *s;
        if (c < 0x80) { s++; continue; }
        if (c >= 0xc2 && c <= 0xdf) {
            if (end - s < 2 || (s[1] & 0xc0) != 0x80) return 0;
            s += 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            if (end - s < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80) return 0;
            if (c == 0xe0 && s[1] < 0xa0) return 0;
            if (c == 0xed && s[1] > 0x9f) return 0;
            s += 3;
        } else if (c >= 0xf0 && c <= 0xf4) {
            if (end - s < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80
                || (s[3] & 0xc0) != 0x80) return 0;
            if (c == 0xf0 && s[1] < 0x90) return 0;
            if (c == 0xf4 && s[1] > 0x8f) return 0;
            s += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

/* ---- pass 1: is this a request the fast path reads exactly like the reference? ------------ */

/* Each checker walks one message: known fields must have their wire type, strings must be
 * UTF-8, and a singular field may appear once (protobuf merges repeated messages and keeps
 * the last scalar: rare, left to the reference code). */
#define SEEN(bit) do { if (seen & (1ULL << (bit))) return 0; seen |= 1ULL << (bit); } while (0)

static int ok_string(Rd *r, uint32_t wt) {
    Rd s;
    return wt == 2 && rd_len(r, &s) && utf8_ok(s.p, s.end);
}

static int ok_keyvalue(Rd r, int depth);
static int ok_anyvalue(Rd r, int depth);

/* The items of an ArrayValue (AnyValues) or a KeyValueList (KeyValues): field 1, repeated. */
static int ok_items(Rd r, int depth, int kv) {
    uint32_t f, wt;
    Rd item;
    while (r.p < r.end) {
        if (!rd_tag(&r, &f, &wt)) return 0;
        if (f == 1) {
            if (wt != 2 || !rd_len(&r, &item)) return 0;
            if (!(kv ? ok_keyvalue(item, depth) : ok_anyvalue(item, depth))) return 0;
        } else if (!rd_skip(&r, wt)) {
            return 0;
        }
    }
    return 1;
}

static int ok_anyvalue(Rd r, int depth) {
    uint32_t f, wt;
    uint64_t seen = 0, v;
    Rd sub;
    if (depth > MAX_DEPTH) return 0;
    while (r.p < r.end) {
        if (!rd_tag(&r, &f, &wt)) return 0;
        switch (f) {
        case 1: if (!ok_string(&r, wt)) return 0; break;
        case 2: case 3: if (wt != 0 || !rd_varint(&r, &v)) return 0; break;
        case 4: if (wt != 1 || !rd_fixed64(&r, &v)) return 0; break;
        case 5: case 6:
            SEEN(5);  /* one message-typed value at most: merging is left to upb */
            if (wt != 2 || !rd_len(&r, &sub) || !ok_items(sub, depth + 1, f == 6)) return 0;
            break;
        case 7: case 8: return 0;  /* bytes ($bytes tag) and strindex values */
        default: if (!rd_skip(&r, wt)) return 0;
        }
    }
    return 1;
}

static int ok_keyvalue(Rd r, int depth) {
    uint32_t f, wt;
    uint64_t seen = 0;
    Rd sub;
    while (r.p < r.end) {
        if (!rd_tag(&r, &f, &wt)) return 0;
        if (f == 1) {
            SEEN(1);
            if (!ok_string(&r, wt)) return 0;
        } else if (f == 2) {
            SEEN(2);
            if (wt != 2 || !rd_len(&r, &sub) || !ok_anyvalue(sub, depth + 1)) return 0;
        } else if (!rd_skip(&r, wt)) {
            return 0;
        }
    }
    return 1;
}

/* A message whose fields are described by a small table: for each field number below 32,
 * 'S' string, 'B' bytes, 'V' varint, 'D' fixed64, 'F' fixed32, 'K' repeated KeyValue,
 * 'M' a singular message checked by `sub`, 'R' a repeated message checked by `sub`. */
typedef int (*checker)(Rd r);

static int ok_fields(Rd r, const char *spec, checker sub) {
    uint32_t f, wt;
    uint64_t seen = 0, v;
    uint32_t f32;
    Rd s;
    size_t nspec = strlen(spec);
    while (r.p < r.end) {
        if (!rd_tag(&r, &f, &wt)) return 0;
        char t = f < nspec ? spec[f] : '.';
        switch (t) {
        case 'S': SEEN(f); if (!ok_string(&r, wt)) return 0; break;
        case 'B': SEEN(f); if (wt != 2 || !rd_len(&r, &s)) return 0; break;
        case 'V': SEEN(f); if (wt != 0 || !rd_varint(&r, &v)) return 0; break;
        case 'D': SEEN(f); if (wt != 1 || !rd_fixed64(&r, &v)) return 0; break;
        case 'F': SEEN(f); if (wt != 5 || !rd_fixed32(&r, &f32)) return 0; break;
        case 'K': if (wt != 2 || !rd_len(&r, &s) || !ok_keyvalue(s, 1)) return 0; break;
        case 'M': SEEN(f); /* fall through */
        case 'R': if (wt != 2 || !rd_len(&r, &s) || !sub(s)) return 0; break;
        default: if (!rd_skip(&r, wt)) return 0;
        }
    }
    return 1;
}

/* Field tables, indexed by field number (see opentelemetry/proto/trace/v1/trace.proto). */
static int ok_none(Rd r) { (void)r; return 0; }
static int ok_status(Rd r) { return ok_fields(r, "..SV", ok_none); }
static int ok_event(Rd r) { return ok_fields(r, ".DSKV", ok_none); }
static int ok_link(Rd r) { return ok_fields(r, ".BBSKVF", ok_none); }

static int ok_span(Rd r) {
    /* 1 trace_id, 2 span_id, 3 trace_state, 4 parent, 5 name, 6 kind, 7-8 times,
     * 9 attributes, 10 dropped, 11 events, 12 dropped, 13 links, 14 dropped, 15 status,
     * 16 flags */
    uint32_t f, wt;
    uint64_t seen = 0, v;
    uint32_t f32;
    Rd s;
    while (r.p < r.end) {
        if (!rd_tag(&r, &f, &wt)) return 0;
        switch (f) {
        case 1: case 2: case 4: SEEN(f); if (wt != 2 || !rd_len(&r, &s)) return 0; break;
        case 3: case 5: SEEN(f); if (!ok_string(&r, wt)) return 0; break;
        case 6: case 10: case 12: case 14:
            SEEN(f); if (wt != 0 || !rd_varint(&r, &v)) return 0; break;
        case 7: case 8: SEEN(f); if (wt != 1 || !rd_fixed64(&r, &v)) return 0; break;
        case 9: if (wt != 2 || !rd_len(&r, &s) || !ok_keyvalue(s, 1)) return 0; break;
        case 11: if (wt != 2 || !rd_len(&r, &s) || !ok_event(s)) return 0; break;
        case 13: if (wt != 2 || !rd_len(&r, &s) || !ok_link(s)) return 0; break;
        case 15: SEEN(f); if (wt != 2 || !rd_len(&r, &s) || !ok_status(s)) return 0; break;
        case 16: SEEN(f); if (wt != 5 || !rd_fixed32(&r, &f32)) return 0; break;
        default: if (!rd_skip(&r, wt)) return 0;
        }
    }
    return 1;
}

static int ok_resource(Rd r) { return ok_fields(r, ".KV", ok_none); }
static int ok_scope(Rd r) { return ok_fields(r, ".SSKV", ok_none); }

/* ResourceSpans and ScopeSpans share a shape: 1 a singular message (`head`), 2 the repeated
 * children (`item`), 3 schema_url. */
static int ok_group(Rd r, checker head, checker item) {
    uint32_t f, wt;
    uint64_t seen = 0;
    Rd s;
    while (r.p < r.end) {
        if (!rd_tag(&r, &f, &wt)) return 0;
        if (f == 1) {
            SEEN(1);
            if (wt != 2 || !rd_len(&r, &s) || !head(s)) return 0;
        } else if (f == 2) {
            if (wt != 2 || !rd_len(&r, &s) || !item(s)) return 0;
        } else if (f == 3) {
            SEEN(3);
            if (!ok_string(&r, wt)) return 0;
        } else if (!rd_skip(&r, wt)) {
            return 0;
        }
    }
    return 1;
}

static int ok_scope_spans(Rd r) { return ok_group(r, ok_scope, ok_span); }
static int ok_resource_spans(Rd r) { return ok_group(r, ok_resource, ok_scope_spans); }

static int ok_request(Rd r) { return ok_fields(r, ".R", ok_resource_spans); }

/* ---- pass 2: values ---------------------------------------------------------------------- */

static PyObject *S_DOLLAR_KVLIST, *S_DOLLAR_DOUBLE, *S_DOLLAR_COL, *S_NAN, *S_INF, *S_NINF,
    *S_TIME, *S_NAME, *S_ATTRIBUTES, *S_DROPPED, *S_TRACE_ID, *S_SPAN_ID, *S_TRACE_STATE,
    *S_FLAGS, *S_SERVICE_NAME, *S_EMPTY;

static PyObject *str_of(Rd s) {
    return PyUnicode_DecodeUTF8((const char *)s.p, s.end - s.p, NULL);
}

static PyObject *hex_of(Rd s) {
    static const char digits[] = "0123456789abcdef";
    Py_ssize_t n = s.end - s.p;
    PyObject *out = PyUnicode_New(2 * n, 127);
    if (!out) return NULL;
    Py_UCS1 *d = PyUnicode_1BYTE_DATA(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        d[2 * i] = digits[s.p[i] >> 4];
        d[2 * i + 1] = digits[s.p[i] & 15];
    }
    return out;
}

static PyObject *double_of(uint64_t bits) {
    double x;
    memcpy(&x, &bits, 8);
    if (isfinite(x)) return PyFloat_FromDouble(x);
    PyObject *tag;
    if (isnan(x)) {
        if (bits == 0x7ff8000000000000ULL) {
            tag = Py_NewRef(S_NAN);
        } else {
            char buf[19];
            snprintf(buf, sizeof buf, "0x%016llx", (unsigned long long)bits);
            tag = PyUnicode_FromString(buf);
            if (!tag) return NULL;
        }
    } else {
        tag = Py_NewRef(x > 0 ? S_INF : S_NINF);
    }
    PyObject *d = PyDict_New();
    if (d && PyDict_SetItem(d, S_DOLLAR_DOUBLE, tag) < 0) Py_CLEAR(d);
    Py_DECREF(tag);
    return d;
}

static PyObject *any_to_py(Rd r);

/* A KeyValue: (*key, *value) as new references. */
static int keyvalue_of(Rd r, PyObject **key, PyObject **value) {
    uint32_t f, wt;
    Rd s, kr = {NULL, NULL}, vr = {NULL, NULL};
    int has_v = 0;
    while (r.p < r.end && rd_tag(&r, &f, &wt)) {
        if (f == 1) { rd_len(&r, &kr); }
        else if (f == 2) { rd_len(&r, &vr); has_v = 1; }
        else { rd_skip(&r, wt); }
    }
    (void)s;
    *key = kr.p ? str_of(kr) : Py_NewRef(S_EMPTY);
    if (!*key) return -1;
    *value = has_v ? any_to_py(vr) : Py_NewRef(Py_None);
    if (!*value) { Py_CLEAR(*key); return -1; }
    return 0;
}

/* anyvalue.kvlist_to_py: a dict, or {"$kvlist": [[k, v], ...]} when keys repeat or one
 * starts with "$". */
static PyObject *kvlist_of(Rd r) {
    uint32_t f, wt;
    Rd item;
    PyObject *d = PyDict_New(), *pairs = PyList_New(0);
    int tagged = 0;
    if (!d || !pairs) goto fail;
    while (r.p < r.end && rd_tag(&r, &f, &wt)) {
        if (f != 1) { rd_skip(&r, wt); continue; }
        rd_len(&r, &item);
        PyObject *k, *v;
        if (keyvalue_of(item, &k, &v) < 0) goto fail;
        if (!tagged) {
            if (PyUnicode_GET_LENGTH(k) && PyUnicode_READ_CHAR(k, 0) == '$') tagged = 1;
            else if (PyDict_Contains(d, k)) tagged = 1;
        }
        PyObject *pair = PyList_New(2);
        if (!pair) { Py_DECREF(k); Py_DECREF(v); goto fail; }
        PyList_SET_ITEM(pair, 0, Py_NewRef(k));
        PyList_SET_ITEM(pair, 1, Py_NewRef(v));
        int err = PyList_Append(pairs, pair) < 0 || PyDict_SetItem(d, k, v) < 0;
        Py_DECREF(pair); Py_DECREF(k); Py_DECREF(v);
        if (err) goto fail;
    }
    if (!tagged) { Py_DECREF(pairs); return d; }
    Py_DECREF(d);
    d = PyDict_New();
    if (!d || PyDict_SetItem(d, S_DOLLAR_KVLIST, pairs) < 0) goto fail;
    Py_DECREF(pairs);
    return d;
fail:
    Py_XDECREF(d); Py_XDECREF(pairs);
    return NULL;
}

static PyObject *array_of(Rd r) {
    uint32_t f, wt;
    Rd item;
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    while (r.p < r.end && rd_tag(&r, &f, &wt)) {
        if (f != 1) { rd_skip(&r, wt); continue; }
        rd_len(&r, &item);
        PyObject *v = any_to_py(item);
        if (!v || PyList_Append(out, v) < 0) { Py_XDECREF(v); Py_DECREF(out); return NULL; }
        Py_DECREF(v);
    }
    return out;
}

/* anyvalue.to_py: the last member of the oneof wins. */
static PyObject *any_to_py(Rd r) {
    uint32_t f, wt, which = 0;
    uint64_t v = 0;
    Rd s = {NULL, NULL};
    while (r.p < r.end && rd_tag(&r, &f, &wt)) {
        switch (f) {
        case 1: case 5: case 6: rd_len(&r, &s); which = f; break;
        case 2: case 3: rd_varint(&r, &v); which = f; break;
        case 4: rd_fixed64(&r, &v); which = f; break;
        default: rd_skip(&r, wt);
        }
    }
    switch (which) {
    case 1: return str_of(s);
    case 2: return PyBool_FromLong(v != 0);
    case 3: return PyLong_FromLongLong((long long)v);
    case 4: return double_of(v);
    case 5: return array_of(s);
    case 6: return kvlist_of(s);
    default: Py_RETURN_NONE;
    }
}

/* anyvalue.attrs_to_dict over every `field` of message `r` (repeated KeyValue). */
static PyObject *attrs_of(Rd r, uint32_t field) {
    uint32_t f, wt;
    Rd item;
    PyObject *out = PyDict_New();
    if (!out) return NULL;
    while (r.p < r.end && rd_tag(&r, &f, &wt)) {
        if (f != field) { rd_skip(&r, wt); continue; }
        rd_len(&r, &item);
        PyObject *k, *v;
        if (keyvalue_of(item, &k, &v) < 0) { Py_DECREF(out); return NULL; }
        int err = PyDict_SetItem(out, k, v);
        Py_DECREF(k); Py_DECREF(v);
        if (err < 0) { Py_DECREF(out); return NULL; }
    }
    return out;
}

/* ---- Arrow column builders --------------------------------------------------------------- */

typedef struct { uint8_t *data; size_t len, cap; } Buf;

static int buf_reserve(Buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    uint8_t *d = PyMem_Realloc(b->data, cap);
    if (!d) { PyErr_NoMemory(); return -1; }
    b->data = d;
    b->cap = cap;
    return 0;
}

static inline int buf_put(Buf *b, const void *p, size_t n) {
    if (buf_reserve(b, n) < 0) return -1;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

enum { C_FIXED, C_STR, C_U32, C_U64, C_I8, C_U16, C_I64, C_BOOL };

typedef struct {
    int kind, width;
    Buf data, offsets, valid;
    Py_ssize_t n, nulls;
} Col;

static int col_valid(Col *c, int ok) {
    if ((c->n & 7) == 0) {
        uint8_t z = 0;
        if (buf_put(&c->valid, &z, 1) < 0) return -1;
    }
    if (ok) c->valid.data[c->n >> 3] |= (uint8_t)(1u << (c->n & 7));
    else c->nulls++;
    c->n++;
    return 0;
}

static int col_str(Col *c, const void *p, size_t n, int ok) {
    if (ok && buf_put(&c->data, p, n) < 0) return -1;
    if (c->data.len > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "a column of a batch passed 2 GiB");
        return -1;
    }
    int32_t end = (int32_t)c->data.len;
    if (buf_put(&c->offsets, &end, 4) < 0) return -1;
    return col_valid(c, ok);
}

static int col_bytes_obj(Col *c, PyObject *b) {  /* bytes, or None for null */
    if (b == Py_None) return col_str(c, NULL, 0, 0);
    return col_str(c, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), 1);
}

static int col_fixed(Col *c, const void *p, int ok) {
    static const uint8_t zeros[16];
    if (buf_put(&c->data, ok ? p : zeros, c->width) < 0) return -1;
    return col_valid(c, ok);
}

/* A number (or null when !ok) in the column's width. Booleans are bits, as Arrow keeps them. */
static int col_value(Col *c, uint64_t v, int ok) {
    int rc = 0;
    if (!ok) v = 0;
    switch (c->kind) {
    case C_U32: { uint32_t x = (uint32_t)v; rc = buf_put(&c->data, &x, 4); break; }
    case C_U64: case C_I64: rc = buf_put(&c->data, &v, 8); break;
    case C_U16: { uint16_t x = (uint16_t)v; rc = buf_put(&c->data, &x, 2); break; }
    case C_I8: { int8_t x = (int8_t)v; rc = buf_put(&c->data, &x, 1); break; }
    case C_BOOL:
        if ((c->n & 7) == 0) {
            uint8_t z = 0;
            rc = buf_put(&c->data, &z, 1);
        }
        if (rc == 0 && v) c->data.data[c->n >> 3] |= (uint8_t)(1u << (c->n & 7));
        break;
    }
    if (rc < 0) return -1;
    return col_valid(c, ok);
}

static int col_num(Col *c, uint64_t v) { return col_value(c, v, 1); }

/* The generic columns, in schema.GENERIC_FIELDS order. */
enum {
    TRACE_ID, SPAN_ID, PARENT_SPAN_ID, TRACE_STATE, FLAGS, NAME, KIND, START, END,
    STATUS_CODE, STATUS_MESSAGE, SERVICE_NAME, RESOURCE_ATTRIBUTES, RESOURCE_DROPPED,
    RESOURCE_SCHEMA_URL, SCOPE_NAME, SCOPE_VERSION, SCOPE_ATTRIBUTES, SCOPE_DROPPED,
    SCOPE_SCHEMA_URL, ATTRIBUTES, DROPPED_ATTRIBUTES, EVENTS, DROPPED_EVENTS, LINKS,
    DROPPED_LINKS, NCOLS
};

static const int COL_KIND[NCOLS] = {
    C_FIXED, C_FIXED, C_FIXED, C_STR, C_U32, C_STR, C_I8, C_U64, C_U64,
    C_I8, C_STR, C_STR, C_STR, C_U32,
    C_STR, C_STR, C_STR, C_STR, C_U32,
    C_STR, C_STR, C_U32, C_STR, C_U32, C_STR,
    C_U32,
};

/* ---- the Builder type -------------------------------------------------------------------- */

#define MAX_AUDIT 64

typedef struct {
    PyObject_HEAD
    PyObject *normalize, *dumps;
    PyObject *tenants, *hours, *rejected;
    Col cols[NCOLS + MAX_AUDIT];  /* the generic columns, then the audit columns */
    PyObject *audit_index;  /* audit column name -> its index among the audit columns */
    int n_audit;
    int broken;
} Builder;

static void cols_reset(Builder *b, int free_all) {
    for (int i = 0; i < NCOLS + MAX_AUDIT; i++) {
        Col *c = &b->cols[i];
        if (free_all) {
            PyMem_Free(c->data.data); PyMem_Free(c->offsets.data); PyMem_Free(c->valid.data);
            memset(c, 0, sizeof *c);
        } else {
            c->data.len = c->offsets.len = c->valid.len = 0;
            c->n = c->nulls = 0;
        }
        if (i < NCOLS) {
            c->kind = COL_KIND[i];
            c->width = i == TRACE_ID ? 16 : 8;
        }
    }
}

static int lists_reset(Builder *b) {
    Py_XSETREF(b->tenants, PyList_New(0));
    Py_XSETREF(b->hours, PyList_New(0));
    Py_XSETREF(b->rejected, PyList_New(0));
    return b->tenants && b->hours && b->rejected ? 0 : -1;
}

/* Builder(normalize, dumps, audit): `audit` lists the audit columns as (name, kind), kind
 * one of "str", "int64", "uint16", "bool" (schema.AUDIT_COLUMNS). */
static int Builder_init(Builder *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"normalize", "dumps", "audit", NULL};
    PyObject *normalize, *dumps, *audit;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO!", kwlist, &normalize, &dumps,
                                     &PyList_Type, &audit))
        return -1;
    if (PyList_GET_SIZE(audit) > MAX_AUDIT) {
        PyErr_SetString(PyExc_ValueError, "too many audit columns");
        return -1;
    }
    Py_XSETREF(self->normalize, Py_NewRef(normalize));
    Py_XSETREF(self->dumps, Py_NewRef(dumps));
    cols_reset(self, 1);
    Py_XSETREF(self->audit_index, PyDict_New());
    if (!self->audit_index) return -1;
    self->n_audit = (int)PyList_GET_SIZE(audit);
    for (int i = 0; i < self->n_audit; i++) {
        PyObject *name, *kind, *ix;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(audit, i), "UU", &name, &kind)) return -1;
        const char *k = PyUnicode_AsUTF8(kind);
        if (!k) return -1;
        Col *c = &self->cols[NCOLS + i];
        if (!strcmp(k, "str")) c->kind = C_STR;
        else if (!strcmp(k, "int64")) c->kind = C_I64;
        else if (!strcmp(k, "uint16")) c->kind = C_U16;
        else if (!strcmp(k, "bool")) c->kind = C_BOOL;
        else {
            PyErr_Format(PyExc_ValueError, "no audit column kind %R", kind);
            return -1;
        }
        ix = PyLong_FromLong(i);
        if (!ix || PyDict_SetItem(self->audit_index, name, ix) < 0) { Py_XDECREF(ix); return -1; }
        Py_DECREF(ix);
    }
    self->broken = 0;
    return lists_reset(self);
}

static void Builder_dealloc(Builder *self) {
    cols_reset(self, 1);
    Py_XDECREF(self->normalize); Py_XDECREF(self->dumps); Py_XDECREF(self->audit_index);
    Py_XDECREF(self->tenants);
    Py_XDECREF(self->hours); Py_XDECREF(self->rejected);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* dumps(obj) if obj is non-empty, else None: new reference to bytes or None. */
static PyObject *json_or_none(Builder *b, PyObject *obj) {
    Py_ssize_t n = PyDict_Check(obj) ? PyDict_GET_SIZE(obj) : PyList_GET_SIZE(obj);
    if (!n) Py_RETURN_NONE;
    PyObject *out = PyObject_CallOneArg(b->dumps, obj);
    if (out && !PyBytes_Check(out)) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_TypeError, "dumps must return bytes");
        return NULL;
    }
    return out;
}

typedef struct {
    PyObject *service, *res, *res_json, *scope_json;
    Rd res_url, sc_name, sc_ver, sc_url;
    int has_res_url, has_sc_name, has_sc_ver, has_sc_url;
    uint32_t res_dropped, sc_dropped;
} Context;

#define PUT(d, key, expr) \
    do { PyObject *v_ = (expr); \
         if (!v_ || PyDict_SetItem(d, key, v_) < 0) { Py_XDECREF(v_); Py_DECREF(d); \
                                                       return NULL; } \
         Py_DECREF(v_); } while (0)

/* records.append_request's event dict (keys in its order: the JSON text depends on it). */
static PyObject *event_of(Rd r) {
    uint32_t f, wt;
    uint64_t time = 0, dropped = 0;
    Rd r0 = r, name = {NULL, NULL};
    while (r.p < r.end && rd_tag(&r, &f, &wt)) {
        if (f == 1) rd_fixed64(&r, &time);
        else if (f == 2) rd_len(&r, &name);
        else if (f == 4) rd_varint(&r, &dropped);
        else rd_skip(&r, wt);
    }
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    PUT(d, S_TIME, PyLong_FromUnsignedLongLong(time));
    PUT(d, S_NAME, name.p ? str_of(name) : Py_NewRef(S_EMPTY));
    PUT(d, S_ATTRIBUTES, attrs_of(r0, 3));
    PUT(d, S_DROPPED, PyLong_FromUnsignedLong((uint32_t)dropped));
    return d;
}

static PyObject *link_of(Rd r) {
    uint32_t f, wt, flags = 0;
    uint64_t dropped = 0;
    Rd r0 = r, tid = {NULL, NULL}, sid = {NULL, NULL}, state = {NULL, NULL};
    while (r.p < r.end && rd_tag(&r, &f, &wt)) {
        if (f == 1) rd_len(&r, &tid);
        else if (f == 2) rd_len(&r, &sid);
        else if (f == 3) rd_len(&r, &state);
        else if (f == 5) rd_varint(&r, &dropped);
        else if (f == 6) rd_fixed32(&r, &flags);
        else rd_skip(&r, wt);
    }
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    PUT(d, S_TRACE_ID, tid.p ? hex_of(tid) : Py_NewRef(S_EMPTY));
    PUT(d, S_SPAN_ID, sid.p ? hex_of(sid) : Py_NewRef(S_EMPTY));
    PUT(d, S_TRACE_STATE, state.p ? str_of(state) : Py_NewRef(S_EMPTY));
    PUT(d, S_ATTRIBUTES, attrs_of(r0, 4));
    PUT(d, S_DROPPED, PyLong_FromUnsignedLong((uint32_t)dropped));
    PUT(d, S_FLAGS, PyLong_FromUnsignedLong(flags));
    return d;
}

/* A repeated message field of `r` as a list of dicts made by `of`. */
static PyObject *list_of(Rd r, uint32_t field, PyObject *(*of)(Rd)) {
    uint32_t f, wt;
    Rd item;
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    while (r.p < r.end && rd_tag(&r, &f, &wt)) {
        if (f != field) { rd_skip(&r, wt); continue; }
        rd_len(&r, &item);
        PyObject *v = of(item);
        if (!v || PyList_Append(out, v) < 0) { Py_XDECREF(v); Py_DECREF(out); return NULL; }
        Py_DECREF(v);
    }
    return out;
}

static int all_zero(Rd s) {
    for (const uint8_t *p = s.p; p < s.end; p++) if (*p) return 0;
    return 1;
}

/* records._span_problem, word for word; NULL when the span is valid. */
static PyObject *span_problem(Rd tid, Rd sid, Rd parent, int32_t kind, int32_t code) {
    Py_ssize_t nt = tid.end - tid.p, ns = sid.end - sid.p, np = parent.end - parent.p;
    if (nt != 16 || all_zero(tid))
        return PyUnicode_FromFormat("trace_id must be 16 non-zero bytes, got %zd bytes", nt);
    if (ns != 8 || all_zero(sid))
        return PyUnicode_FromFormat("span_id must be 8 non-zero bytes, got %zd bytes", ns);
    if (np != 0 && np != 8)
        return PyUnicode_FromFormat("parent_span_id must be empty or 8 bytes, got %zd bytes",
                                    np);
    if (kind < -128 || kind > 127)
        return PyUnicode_FromFormat("kind %d is not a SpanKind", (int)kind);
    if (code < -128 || code > 127)
        return PyUnicode_FromFormat("status.code %d is not a StatusCode", (int)code);
    return NULL;
}

static const uint8_t EMPTY_BYTES[1];

static int audit_slots(Builder *b, PyObject *values, PyObject **slots, uint64_t *nums);

/* One span: validate, build its dicts, normalize, append its row. 0 ok, -1 error. */
static int add_span(Builder *b, Rd r, Context *cx, PyObject *tenant) {
    uint32_t f, wt, flags = 0;
    uint64_t v, start = 0, end = 0, dropped_attrs = 0, dropped_events = 0, dropped_links = 0;
    uint64_t kind_raw = 0, code_raw = 0;
    int n_events = 0, n_links = 0;
    Rd r0 = r, s, status = {NULL, NULL}, msg = {NULL, NULL};
    Rd tid = {EMPTY_BYTES, EMPTY_BYTES}, sid = tid, parent = tid, state = tid, name = tid;
    while (r.p < r.end && rd_tag(&r, &f, &wt)) {
        switch (f) {
        case 1: rd_len(&r, &tid); break;
        case 2: rd_len(&r, &sid); break;
        case 3: rd_len(&r, &state); break;
        case 4: rd_len(&r, &parent); break;
        case 5: rd_len(&r, &name); break;
        case 6: rd_varint(&r, &kind_raw); break;
        case 7: rd_fixed64(&r, &start); break;
        case 8: rd_fixed64(&r, &end); break;
        case 10: rd_varint(&r, &dropped_attrs); break;
        case 11: rd_len(&r, &s); n_events++; break;
        case 12: rd_varint(&r, &dropped_events); break;
        case 13: rd_len(&r, &s); n_links++; break;
        case 14: rd_varint(&r, &dropped_links); break;
        case 15: rd_len(&r, &status); break;
        case 16: rd_fixed32(&r, &flags); break;
        default: rd_skip(&r, wt);
        }
    }
    if (status.p) {
        Rd st = status;
        while (st.p < st.end && rd_tag(&st, &f, &wt)) {
            if (f == 2) rd_len(&st, &msg);
            else if (f == 3) rd_varint(&st, &code_raw);
            else rd_skip(&st, wt);
        }
    }
    int32_t kind = (int32_t)(uint32_t)kind_raw, code = (int32_t)(uint32_t)code_raw;
    (void)v;

    PyObject *problem = span_problem(tid, sid, parent, kind, code);
    if (problem) {
        PyObject *hex = sid.end > sid.p ? hex_of(sid) : PyUnicode_FromString("?");
        PyObject *line = hex ? PyUnicode_FromFormat("span %U: %U", hex, problem) : NULL;
        Py_XDECREF(hex);
        Py_DECREF(problem);
        int err = !line || PyList_Append(b->rejected, line) < 0;
        Py_XDECREF(line);
        return err ? -1 : 0;
    }
    if (PyErr_Occurred()) return -1;

    PyObject *attrs = NULL, *events = NULL, *links = NULL, *code_obj = NULL, *res = NULL;
    PyObject *values = NULL, *lifted = NULL, *stored = NULL;
    PyObject *slots[MAX_AUDIT];
    uint64_t nums[MAX_AUDIT];
    PyObject *attrs_json = NULL, *events_json = NULL, *links_json = NULL, *hour = NULL;
    int rc = -1;
    attrs = attrs_of(r0, 9);
    events = n_events ? list_of(r0, 11, event_of) : PyList_New(0);
    links = n_links ? list_of(r0, 13, link_of) : Py_NewRef(Py_None);
    code_obj = PyLong_FromLong(code);
    if (!attrs || !events || !links || !code_obj) goto done;
    res = PyObject_CallFunctionObjArgs(b->normalize, attrs, cx->res, events, code_obj, NULL);
    if (!res) goto done;
    if (!PyTuple_Check(res) || PyTuple_GET_SIZE(res) != 2
        || !PyDict_Check(PyTuple_GET_ITEM(res, 0)) || !PyDict_Check(PyTuple_GET_ITEM(res, 1))) {
        PyErr_SetString(PyExc_TypeError, "normalize must return (dict, dict)");
        goto done;
    }
    values = PyTuple_GET_ITEM(res, 0);
    lifted = PyTuple_GET_ITEM(res, 1);
    if (audit_slots(b, values, slots, nums) < 0) goto done;
    if (PyDict_GET_SIZE(lifted)) {
        /* The attribute values stored in an audit column are kept once: {"$col": column}. */
        stored = PyDict_New();
        if (!stored) goto done;
        Py_ssize_t pos = 0;
        PyObject *k, *val;
        while (PyDict_Next(attrs, &pos, &k, &val)) {
            PyObject *col = PyDict_GetItemWithError(lifted, k), *put;
            if (col) {
                put = PyDict_New();
                if (!put || PyDict_SetItem(put, S_DOLLAR_COL, col) < 0) {
                    Py_XDECREF(put);
                    goto done;
                }
            } else if (PyErr_Occurred()) {
                goto done;
            } else {
                put = Py_NewRef(val);
            }
            int err = PyDict_SetItem(stored, k, put);
            Py_DECREF(put);
            if (err < 0) goto done;
        }
    } else {
        stored = Py_NewRef(attrs);
    }
    attrs_json = json_or_none(b, stored);
    events_json = json_or_none(b, events);
    links_json = links == Py_None ? Py_NewRef(Py_None) : json_or_none(b, links);
    hour = PyLong_FromUnsignedLongLong(start / HOUR_NS);
    if (!attrs_json || !events_json || !links_json || !hour) goto done;

    Col *c = b->cols;
    if (col_fixed(&c[TRACE_ID], tid.p, 1) < 0 || col_fixed(&c[SPAN_ID], sid.p, 1) < 0
        || col_fixed(&c[PARENT_SPAN_ID], parent.p, parent.end > parent.p) < 0
        || col_str(&c[TRACE_STATE], state.p, state.end - state.p, state.end > state.p) < 0
        || col_num(&c[FLAGS], flags) < 0
        || col_str(&c[NAME], name.p, name.end - name.p, 1) < 0
        || col_num(&c[KIND], (uint64_t)(int64_t)kind) < 0
        || col_num(&c[START], start) < 0 || col_num(&c[END], end) < 0
        || col_num(&c[STATUS_CODE], (uint64_t)(int64_t)code) < 0
        || col_str(&c[STATUS_MESSAGE], msg.p, msg.end - msg.p, msg.end > msg.p) < 0)
        goto done;
    if (cx->service == Py_None) {
        if (col_str(&c[SERVICE_NAME], NULL, 0, 0) < 0) goto done;
    } else {
        Py_ssize_t n;
        const char *u = PyUnicode_AsUTF8AndSize(cx->service, &n);
        if (!u || col_str(&c[SERVICE_NAME], u, n, 1) < 0) goto done;
    }
    if (col_bytes_obj(&c[RESOURCE_ATTRIBUTES], cx->res_json) < 0
        || col_num(&c[RESOURCE_DROPPED], cx->res_dropped) < 0
        || col_str(&c[RESOURCE_SCHEMA_URL], cx->res_url.p, cx->res_url.end - cx->res_url.p,
                   cx->res_url.end > cx->res_url.p) < 0
        || col_str(&c[SCOPE_NAME], cx->sc_name.p, cx->sc_name.end - cx->sc_name.p,
                   cx->sc_name.end > cx->sc_name.p) < 0
        || col_str(&c[SCOPE_VERSION], cx->sc_ver.p, cx->sc_ver.end - cx->sc_ver.p,
                   cx->sc_ver.end > cx->sc_ver.p) < 0
        || col_bytes_obj(&c[SCOPE_ATTRIBUTES], cx->scope_json) < 0
        || col_num(&c[SCOPE_DROPPED], cx->sc_dropped) < 0
        || col_str(&c[SCOPE_SCHEMA_URL], cx->sc_url.p, cx->sc_url.end - cx->sc_url.p,
                   cx->sc_url.end > cx->sc_url.p) < 0
        || col_bytes_obj(&c[ATTRIBUTES], attrs_json) < 0
        || col_num(&c[DROPPED_ATTRIBUTES], (uint32_t)dropped_attrs) < 0
        || col_bytes_obj(&c[EVENTS], events_json) < 0
        || col_num(&c[DROPPED_EVENTS], (uint32_t)dropped_events) < 0
        || col_bytes_obj(&c[LINKS], links_json) < 0
        || col_num(&c[DROPPED_LINKS], (uint32_t)dropped_links) < 0)
        goto done;
    for (int i = 0; i < b->n_audit; i++) {
        Col *a = &b->cols[NCOLS + i];
        PyObject *x = slots[i];
        int err;
        if (a->kind == C_STR) {
            Py_ssize_t n = 0;
            const char *u = x ? PyUnicode_AsUTF8AndSize(x, &n) : NULL;
            if (x && !u) goto done;
            err = col_str(a, u, n, x != NULL);
        } else {
            err = col_value(a, nums[i], x != NULL);
        }
        if (err < 0) goto done;
    }
    if (PyList_Append(b->tenants, tenant) < 0
        || PyList_Append(b->hours, hour) < 0)
        goto done;
    rc = 0;
done:
    Py_XDECREF(attrs); Py_XDECREF(events); Py_XDECREF(links); Py_XDECREF(code_obj);
    Py_XDECREF(res); Py_XDECREF(stored); Py_XDECREF(attrs_json); Py_XDECREF(events_json);
    Py_XDECREF(links_json); Py_XDECREF(hour);
    return rc;
}

/* The normalizer's values by audit column (borrowed; NULL where absent or None), numbers
 * converted, each checked against its column's type as pa.array would: a value of another
 * type is a TypeError, and nothing of the row has been appended yet. */
static int audit_slots(Builder *b, PyObject *values, PyObject **slots, uint64_t *nums) {
    Py_ssize_t pos = 0;
    PyObject *k, *x;
    for (int i = 0; i < b->n_audit; i++) slots[i] = NULL;
    while (PyDict_Next(values, &pos, &k, &x)) {
        PyObject *ix = PyDict_GetItemWithError(b->audit_index, k);
        if (!ix) {
            if (PyErr_Occurred()) return -1;
            continue;  /* not a column: pa.array ignores it too */
        }
        if (x == Py_None) continue;
        int i = (int)PyLong_AsLong(ix);
        Col *a = &b->cols[NCOLS + i];
        int ok;
        switch (a->kind) {
        case C_STR: ok = PyUnicode_Check(x); break;
        case C_BOOL: ok = PyBool_Check(x); nums[i] = x == Py_True; break;
        default:
            ok = PyLong_Check(x) && !PyBool_Check(x);
            if (ok) {
                long long v = PyLong_AsLongLong(x);
                if (v == -1 && PyErr_Occurred()) return -1;
                if (a->kind == C_U16 && (v < 0 || v > 65535)) {
                    PyErr_Format(PyExc_OverflowError, "audit column %R: %lld is out of range",
                                 k, v);
                    return -1;
                }
                nums[i] = (uint64_t)v;
            }
        }
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "audit column %R cannot hold a %.50s", k,
                         Py_TYPE(x)->tp_name);
            return -1;
        }
        slots[i] = x;
    }
    return 0;
}

static void context_clear(Context *cx) {
    Py_CLEAR(cx->service); Py_CLEAR(cx->res); Py_CLEAR(cx->res_json); Py_CLEAR(cx->scope_json);
}

static int add_scope_spans(Builder *b, Rd r, Context *cx, PyObject *tenant) {
    uint32_t f, wt;
    uint64_t dropped = 0;
    Rd r0 = r, s, scope = {NULL, NULL};
    cx->sc_url.p = cx->sc_url.end = NULL;
    while (r.p < r.end && rd_tag(&r, &f, &wt)) {
        if (f == 1) rd_len(&r, &scope);
        else if (f == 3) rd_len(&r, &cx->sc_url);
        else rd_skip(&r, wt);
    }
    cx->sc_name.p = cx->sc_name.end = cx->sc_ver.p = cx->sc_ver.end = NULL;
    PyObject *scope_attrs = NULL;
    if (scope.p) {
        Rd sc = scope;
        while (sc.p < sc.end && rd_tag(&sc, &f, &wt)) {
            if (f == 1) rd_len(&sc, &cx->sc_name);
            else if (f == 2) rd_len(&sc, &cx->sc_ver);
            else if (f == 4) rd_varint(&sc, &dropped);
            else rd_skip(&sc, wt);
        }
        scope_attrs = attrs_of(scope, 3);
    } else {
        scope_attrs = PyDict_New();
    }
    if (!scope_attrs) return -1;
    cx->sc_dropped = (uint32_t)dropped;
    Py_XSETREF(cx->scope_json, json_or_none(b, scope_attrs));
    Py_DECREF(scope_attrs);
    if (!cx->scope_json) return -1;
    r = r0;
    while (r.p < r.end && rd_tag(&r, &f, &wt)) {
        if (f != 2) { rd_skip(&r, wt); continue; }
        rd_len(&r, &s);
        if (add_span(b, s, cx, tenant) < 0) return -1;
    }
    return 0;
}

static int add_resource_spans(Builder *b, Rd r, PyObject *tenant) {
    uint32_t f, wt;
    uint64_t dropped = 0;
    Rd r0 = r, s, resource = {NULL, NULL};
    Context cx;
    memset(&cx, 0, sizeof cx);
    while (r.p < r.end && rd_tag(&r, &f, &wt)) {
        if (f == 1) rd_len(&r, &resource);
        else if (f == 3) rd_len(&r, &cx.res_url);
        else rd_skip(&r, wt);
    }
    if (resource.p) {
        Rd rs = resource;
        while (rs.p < rs.end && rd_tag(&rs, &f, &wt)) {
            if (f == 2) rd_varint(&rs, &dropped);
            else rd_skip(&rs, wt);
        }
        cx.res = attrs_of(resource, 1);
    } else {
        cx.res = PyDict_New();
    }
    cx.res_dropped = (uint32_t)dropped;
    int rc = -1;
    if (!cx.res) goto done;
    cx.res_json = json_or_none(b, cx.res);
    if (!cx.res_json) goto done;
    cx.service = PyDict_GetItemWithError(cx.res, S_SERVICE_NAME);
    if (!cx.service && PyErr_Occurred()) goto done;
    cx.service = Py_NewRef(cx.service && PyUnicode_Check(cx.service) ? cx.service : Py_None);
    r = r0;
    while (r.p < r.end && rd_tag(&r, &f, &wt)) {
        if (f != 2) { rd_skip(&r, wt); continue; }
        rd_len(&r, &s);
        if (add_scope_spans(b, s, &cx, tenant) < 0) goto done;
    }
    rc = 0;
done:
    context_clear(&cx);
    return rc;
}

static PyObject *Builder_add(Builder *self, PyObject *args) {
    Py_buffer data;
    PyObject *tenant;
    if (!PyArg_ParseTuple(args, "y*U", &data, &tenant)) return NULL;
    if (self->broken) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_RuntimeError, "the builder failed earlier; make a new one");
        return NULL;
    }
    Rd r = {(const uint8_t *)data.buf, (const uint8_t *)data.buf + data.len};
    if (!ok_request(r)) {
        PyBuffer_Release(&data);
        Py_RETURN_FALSE;  /* the reference code converts this request */
    }
    uint32_t f, wt;
    Rd s;
    while (r.p < r.end && rd_tag(&r, &f, &wt)) {
        if (f != 1) { rd_skip(&r, wt); continue; }
        rd_len(&r, &s);
        if (add_resource_spans(self, s, tenant) < 0) {
            self->broken = 1;  /* some columns may hold part of a row */
            PyBuffer_Release(&data);
            return NULL;
        }
    }
    PyBuffer_Release(&data);
    Py_RETURN_TRUE;
}

static PyObject *buf_bytes(Buf *b) {
    return PyBytes_FromStringAndSize((const char *)b->data, (Py_ssize_t)b->len);
}

/* finish() -> (columns, tenants, hours, rejected); each column (generic, then audit) is
 * (length, null count, validity or None, offsets or None, data), for pa.Array.from_buffers.
 * The builder is empty again afterwards. */
static PyObject *Builder_finish(Builder *self, PyObject *Py_UNUSED(ignored)) {
    if (self->broken) {
        PyErr_SetString(PyExc_RuntimeError, "the builder failed earlier; make a new one");
        return NULL;
    }
    int ncols = NCOLS + self->n_audit;
    PyObject *cols = PyList_New(ncols);
    if (!cols) return NULL;
    for (int i = 0; i < ncols; i++) {
        Col *c = &self->cols[i];
        int32_t zero = 0;
        PyObject *valid, *offsets, *data;
        if (c->kind == C_STR && c->n == 0 && buf_put(&c->offsets, &zero, 4) < 0) goto fail;
        if (c->kind == C_STR && c->n > 0) {
            /* offsets start at 0: prepend it */
            offsets = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)c->offsets.len + 4);
            if (!offsets) goto fail;
            memcpy(PyBytes_AS_STRING(offsets), &zero, 4);
            memcpy(PyBytes_AS_STRING(offsets) + 4, c->offsets.data, c->offsets.len);
        } else if (c->kind == C_STR) {
            offsets = buf_bytes(&c->offsets);
        } else {
            offsets = Py_NewRef(Py_None);
        }
        valid = c->nulls ? buf_bytes(&c->valid) : Py_NewRef(Py_None);
        data = buf_bytes(&c->data);
        if (!offsets || !valid || !data) {
            Py_XDECREF(offsets); Py_XDECREF(valid); Py_XDECREF(data);
            goto fail;
        }
        PyObject *t = Py_BuildValue("(nnNNN)", c->n, c->nulls, valid, offsets, data);
        if (!t) goto fail;
        PyList_SET_ITEM(cols, i, t);
    }
    PyObject *out = Py_BuildValue("(NOOO)", cols, self->tenants, self->hours, self->rejected);
    if (!out) return NULL;
    cols_reset(self, 0);
    if (lists_reset(self) < 0) { Py_DECREF(out); return NULL; }
    return out;
fail:
    Py_DECREF(cols);
    return NULL;
}

static PyObject *Builder_len(Builder *self, PyObject *Py_UNUSED(ignored)) {
    return PyLong_FromSsize_t(self->cols[0].n);
}

static PyObject *Builder_rejected(Builder *self, PyObject *Py_UNUSED(ignored)) {
    return Py_NewRef(self->rejected);
}

static PyMethodDef Builder_methods[] = {
    {"rejected", (PyCFunction)Builder_rejected, METH_NOARGS,
     "rejected() -> the list of invalid spans' messages since the last finish()."},
    {"add", (PyCFunction)Builder_add, METH_VARARGS,
     "add(data, tenant) -> bool: convert one serialized ExportTraceServiceRequest; False "
     "(nothing added) when the request needs the reference converter."},
    {"finish", (PyCFunction)Builder_finish, METH_NOARGS,
     "finish() -> (columns, tenants, hours, rejected), and start empty again."},
    {"rows", (PyCFunction)Builder_len, METH_NOARGS, "rows() -> spans added so far."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject BuilderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "aitrail.store._spanrows.Builder",
    .tp_basicsize = sizeof(Builder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Builder(normalize, dumps, audit): span rows as Arrow buffers (records.py).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Builder_init,
    .tp_dealloc = (destructor)Builder_dealloc,
    .tp_methods = Builder_methods,
};

/* ---- DigestWindow: the collector's dedupe window ----------------------------------------- */

/* The last `capacity` distinct 64-bit digests, oldest forgotten first: a ring of digests in
 * arrival order and an open-addressing set over them (linear probing, backward-shift
 * deletion). 12-24 bytes a digest, where a Python dict of ints cost ~90 and an OrderedDict
 * ~130: the default window of 300k spans takes ~6 MB instead of 27-39 MB in each process. */
typedef struct {
    PyObject_HEAD
    uint64_t *ring, *table;
    uint8_t *used;  /* one byte a table slot: a digest may be 0 */
    Py_ssize_t capacity, count, head;  /* ring[head] is the oldest */
    uint64_t mask;
} DigestWindow;

static int window_find(DigestWindow *w, uint64_t d, uint64_t *slot) {
    uint64_t i = d & w->mask;
    while (w->used[i]) {
        if (w->table[i] == d) { *slot = i; return 1; }
        i = (i + 1) & w->mask;
    }
    *slot = i;
    return 0;
}

static void window_delete(DigestWindow *w, uint64_t d) {
    uint64_t i;
    if (!window_find(w, d, &i)) return;
    uint64_t j = i;
    for (;;) {  /* shift later members of the cluster back into the hole */
        j = (j + 1) & w->mask;
        if (!w->used[j]) break;
        uint64_t home = w->table[j] & w->mask;
        /* move j to i unless its home lies cyclically in (i, j] */
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            w->table[i] = w->table[j];
            i = j;
        }
    }
    w->used[i] = 0;
}

static int window_add(DigestWindow *w, uint64_t d) {
    uint64_t slot;
    if (window_find(w, d, &slot)) return 0;  /* already known: keeps its place */
    if (w->count == w->capacity) {
        window_delete(w, w->ring[w->head]);
        w->head = (w->head + 1) % w->capacity;
        w->count--;
        window_find(w, d, &slot);  /* the deletion may have moved the free slot */
    }
    w->table[slot] = d;
    w->used[slot] = 1;
    w->ring[(w->head + w->count) % w->capacity] = d;
    w->count++;
    return 1;
}

static int DigestWindow_init(DigestWindow *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"capacity", NULL};
    Py_ssize_t capacity;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n", kwlist, &capacity)) return -1;
    if (capacity < 1 || capacity > ((Py_ssize_t)1 << 40)) {
        PyErr_SetString(PyExc_ValueError, "capacity must be at least 1");
        return -1;
    }
    uint64_t size = 1;
    while (size < (uint64_t)capacity + capacity / 2 + 1) size <<= 1;  /* load <= 2/3 */
    PyMem_Free(self->ring); PyMem_Free(self->table); PyMem_Free(self->used);
    self->ring = PyMem_Malloc(capacity * sizeof(uint64_t));
    self->table = PyMem_Malloc(size * sizeof(uint64_t));
    self->used = PyMem_Calloc(size, 1);
    if (!self->ring || !self->table || !self->used) { PyErr_NoMemory(); return -1; }
    self->capacity = capacity;
    self->count = self->head = 0;
    self->mask = size - 1;
    return 0;
}

static void DigestWindow_dealloc(DigestWindow *self) {
    PyMem_Free(self->ring); PyMem_Free(self->table); PyMem_Free(self->used);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int as_digest(PyObject *o, uint64_t *d) {
    *d = PyLong_AsUnsignedLongLong(o);
    return *d == (uint64_t)-1 && PyErr_Occurred() ? -1 : 0;
}

static int DigestWindow_contains(DigestWindow *self, PyObject *o) {
    uint64_t d, slot;
    if (!self->table) return 0;
    if (as_digest(o, &d) < 0) return -1;
    return window_find(self, d, &slot);
}

static Py_ssize_t DigestWindow_len(DigestWindow *self) { return self->count; }

static PyObject *DigestWindow_extend(DigestWindow *self, PyObject *iterable) {
    PyObject *it = PyObject_GetIter(iterable), *o;
    if (!it) return NULL;
    if (!self->table) {
        Py_DECREF(it);
        PyErr_SetString(PyExc_RuntimeError, "DigestWindow was not initialised");
        return NULL;
    }
    while ((o = PyIter_Next(it))) {
        uint64_t d;
        int err = as_digest(o, &d);
        Py_DECREF(o);
        if (err < 0) { Py_DECREF(it); return NULL; }
        window_add(self, d);
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef DigestWindow_methods[] = {
    {"extend", (PyCFunction)DigestWindow_extend, METH_O,
     "extend(digests): remember each new digest (u64), forgetting the oldest beyond capacity."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods DigestWindow_seq = {
    .sq_length = (lenfunc)DigestWindow_len,
    .sq_contains = (objobjproc)DigestWindow_contains,
};

static PyTypeObject DigestWindowType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "aitrail.store._spanrows.DigestWindow",
    .tp_basicsize = sizeof(DigestWindow),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "DigestWindow(capacity): the last `capacity` distinct u64 digests; `d in w`.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)DigestWindow_init,
    .tp_dealloc = (destructor)DigestWindow_dealloc,
    .tp_methods = DigestWindow_methods,
    .tp_as_sequence = &DigestWindow_seq,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_spanrows",
    "The compiled span-to-row converter (records.py is the reference).", -1, NULL,
};

PyMODINIT_FUNC PyInit__spanrows(void) {
    struct { PyObject **slot; const char *text; } names[] = {
        {&S_DOLLAR_KVLIST, "$kvlist"}, {&S_DOLLAR_DOUBLE, "$double"}, {&S_DOLLAR_COL, "$col"},
        {&S_NAN, "NaN"}, {&S_INF, "Infinity"}, {&S_NINF, "-Infinity"},
        {&S_TIME, "time_unix_nano"}, {&S_NAME, "name"}, {&S_ATTRIBUTES, "attributes"},
        {&S_DROPPED, "dropped_attributes_count"}, {&S_TRACE_ID, "trace_id"},
        {&S_SPAN_ID, "span_id"}, {&S_TRACE_STATE, "trace_state"}, {&S_FLAGS, "flags"},
        {&S_SERVICE_NAME, "service.name"}, {&S_EMPTY, ""},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        *names[i].slot = PyUnicode_InternFromString(names[i].text);
        if (!*names[i].slot) return NULL;
    }
    if (PyType_Ready(&BuilderType) < 0 || PyType_Ready(&DigestWindowType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Builder", (PyObject *)&BuilderType) < 0
        || PyModule_AddObjectRef(m, "DigestWindow", (PyObject *)&DigestWindowType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "COLUMNS", NCOLS);
    return m;
}
