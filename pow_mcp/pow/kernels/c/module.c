/*
 * pow_mcp.pow.kernels._sha256: the Python binding of the search core (sha256_search.c),
 * which itself knows nothing of Python.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "sha256_search.h"

static PyObject *py_engines(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    PyObject *names = PyList_New(0);
    if (!names)
        return NULL;
    for (int i = 0; i < pow_engine_count(); i++) {
        if (!pow_engine_available(i))
            continue;
        PyObject *s = PyUnicode_FromString(pow_engine_name(i));
        if (!s || PyList_Append(names, s) < 0) {
            Py_XDECREF(s);
            Py_DECREF(names);
            return NULL;
        }
        Py_DECREF(s);
    }
    PyObject *result = PyList_AsTuple(names);
    Py_DECREF(names);
    return result;
}

static int find_engine(const char *name)
{
    const int engine = pow_engine_find(name);
    if (engine < 0)
        PyErr_Format(PyExc_ValueError, "engine '%s' is unknown or not supported by this CPU",
                     name);
    return engine;
}

/* Parse (engine, prefix, start, count[, difficulty]); prefix must be released by the caller
   whenever prefix->obj is set. */
static int parse_job(PyObject *args, int with_difficulty, pow_search_t *job, int *engine,
                     Py_buffer *prefix)
{
    const char *name;
    PyObject *start_obj, *count_obj;
    int difficulty = 64;
    memset(job, 0, sizeof *job);
    prefix->obj = NULL;
    if (with_difficulty ? !PyArg_ParseTuple(args, "sy*OOi:search", &name, prefix, &start_obj,
                                            &count_obj, &difficulty)
                        : !PyArg_ParseTuple(args, "sy*OO:digests", &name, prefix, &start_obj,
                                            &count_obj))
        return -1;
    if ((*engine = find_engine(name)) < 0)
        return -1;
    if (!PyLong_Check(start_obj) || !PyLong_Check(count_obj)) {
        PyErr_SetString(PyExc_TypeError, "start and count must be integers");
        return -1;
    }
    const unsigned long long start = PyLong_AsUnsignedLongLong(start_obj);
    if (start == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    const unsigned long long count = PyLong_AsUnsignedLongLong(count_obj);
    if (count == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    if (count < 1) {
        PyErr_SetString(PyExc_ValueError, "count must be >= 1");
        return -1;
    }
    if (count - 1 > UINT64_MAX - start) {
        PyErr_SetString(PyExc_OverflowError, "start + count - 1 must be at most 2**64 - 1");
        return -1;
    }
    if (difficulty < 1 || difficulty > 64) {
        PyErr_SetString(PyExc_ValueError, "difficulty must be 1..64");
        return -1;
    }
    job->prefix = (const uint8_t *)prefix->buf;
    job->plen = (size_t)prefix->len;
    job->start = start;
    job->count = count;
    job->difficulty = difficulty;
    return 0;
}

static PyObject *py_search(PyObject *self, PyObject *args)
{
    (void)self;
    pow_search_t job;
    int engine;
    Py_buffer prefix;
    PyObject *result = NULL;
    if (parse_job(args, 1, &job, &engine, &prefix) == 0) {
        Py_BEGIN_ALLOW_THREADS
        pow_search(engine, &job);
        Py_END_ALLOW_THREADS

        char hex[65];
        static const char digits[] = "0123456789abcdef";
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 8; j++)
                hex[8 * i + j] = digits[(job.best_h[i] >> (28 - 4 * j)) & 15];
        hex[64] = 0;
        if (job.found)
            result = Py_BuildValue("KKKis", (unsigned long long)job.best_nonce,
                                   (unsigned long long)job.hashes,
                                   (unsigned long long)job.best_nonce, job.best_zeros, hex);
        else
            result = Py_BuildValue("OKKis", Py_None, (unsigned long long)job.hashes,
                                   (unsigned long long)job.best_nonce, job.best_zeros, hex);
    }
    if (prefix.obj)
        PyBuffer_Release(&prefix);
    return result;
}

#define MAX_DIGESTS (1 << 22)

static PyObject *py_digests(PyObject *self, PyObject *args)
{
    (void)self;
    pow_search_t job;
    int engine;
    Py_buffer prefix;
    PyObject *result = NULL;
    if (parse_job(args, 0, &job, &engine, &prefix) == 0) {
        if (job.count > MAX_DIGESTS) {
            PyErr_Format(PyExc_ValueError, "count must be at most %d", MAX_DIGESTS);
        } else if ((result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(32 * job.count)))) {
            job.digests = (uint8_t *)PyBytes_AS_STRING(result);
            Py_BEGIN_ALLOW_THREADS
            pow_search(engine, &job); /* difficulty 64: never stops early */
            Py_END_ALLOW_THREADS
        }
    }
    if (prefix.obj)
        PyBuffer_Release(&prefix);
    return result;
}

static PyObject *py_rounds_per_hash(PyObject *self, PyObject *args)
{
    (void)self;
    const char *name;
    Py_ssize_t plen;
    int digits;
    if (!PyArg_ParseTuple(args, "sni:rounds_per_hash", &name, &plen, &digits))
        return NULL;
    const int engine = find_engine(name);
    if (engine < 0)
        return NULL;
    if (plen < 0 || digits < 1 || digits > 20) {
        PyErr_SetString(PyExc_ValueError, "needs prefix_len >= 0 and 1 <= digits <= 20");
        return NULL;
    }
    return PyFloat_FromDouble(pow_rounds_per_hash(engine, (size_t)plen, digits));
}

static PyMethodDef methods[] = {
    {"engines", py_engines, METH_NOARGS,
     "engines() -> tuple of the engine names this CPU can run, fastest first."},
    {"search", py_search, METH_VARARGS,
     "search(engine, prefix, start, count, difficulty) -> "
     "(found_nonce | None, hashes, best_nonce, best_zeros, best_hash)\n\n"
     "Hash prefix + str(n) for n in [start, start + count) with SHA-256, stopping at the first "
     "n whose hex digest has at least `difficulty` leading zeros. Needs count >= 1, "
     "start + count - 1 < 2**64 and 1 <= difficulty <= 64. Releases the GIL while hashing."},
    {"digests", py_digests, METH_VARARGS,
     "digests(engine, prefix, start, count) -> bytes\n\n"
     "The 32-byte digests of every nonce in [start, start + count), concatenated, computed "
     "by the same search loop (for tests). count is at most 2**22."},
    {"rounds_per_hash", py_rounds_per_hash, METH_VARARGS,
     "rounds_per_hash(engine, prefix_len, digits) -> float\n\n"
     "SHA-256 rounds the engine spends per hash on nonces of that many digits."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_sha256", "Compiled SHA-256 proof-of-work search engines.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__sha256(void) { return PyModule_Create(&module); }
