/* pgoutput's TupleData in C: the one loop of the source that runs for every column of every row
 * change. It does what PgOutputDecoder._tuple's Python loop does, and nothing else: the values
 * are converted as that loop converts them, into the same dict. Anything it does not expect (a
 * value kind other than t/n/u, a short message, text that is not what PostgreSQL prints for the
 * type, bad UTF-8) makes it return None, and the Python loop decodes the tuple and says what is
 * wrong. tests/unit/test_pgoutput_decoder.py checks that both give the same rows. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* The converts of connectors.postgres.decoding.JSON_KINDS, one byte per column. */
#define KIND_TEXT 's'
#define KIND_INT 'i'
#define KIND_FLOAT 'f'
#define KIND_BOOL 'b'
#define KIND_BYTEA 'x'

static uint32_t
be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* int(raw) for what int8/int4/int2/oid print: an optional '-' and digits. NULL without an
 * exception for anything else. */
static PyObject *
to_int(const char *s, Py_ssize_t n)
{
    Py_ssize_t first = (n > 0 && s[0] == '-') ? 1 : 0;
    if (first == n || n > 64) {
        return NULL;
    }
    uint64_t v = 0; /* unsigned: wider texts wrap harmlessly, and are not used */
    for (Py_ssize_t i = first; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return NULL;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (n - first <= 18) {
        return PyLong_FromLongLong(first ? -(int64_t)v : (int64_t)v);
    }
    char buf[65]; /* numeric text wider than an int64 surely holds: Python parses it */
    memcpy(buf, s, (size_t)n);
    buf[n] = '\0';
    return PyLong_FromString(buf, NULL, 10);
}

/* float(raw) when the text ends with a digit, else the text (NaN, Infinity, -Infinity). */
static PyObject *
to_float(const char *s, Py_ssize_t n)
{
    if (n == 0) {
        return NULL;
    }
    if (s[n - 1] < '0' || s[n - 1] > '9') {
        return PyUnicode_DecodeUTF8(s, n, "strict");
    }
    char buf[64];
    if (n >= (Py_ssize_t)sizeof(buf)) {
        return NULL;
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        /* What float() would also take but PostgreSQL never prints: leave it to Python. */
        if (s[j] == '_' || s[j] == ' ') {
            return NULL;
        }
    }
    memcpy(buf, s, (size_t)n);
    buf[n] = '\0';
    char *end = NULL;
    double d = PyOS_string_to_double(buf, &end, NULL);
    if (d == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return NULL;
    }
    if (end != buf + n) {
        return NULL;
    }
    return PyFloat_FromDouble(d);
}

static PyObject *
convert(char kind, const char *s, Py_ssize_t n)
{
    switch (kind) {
    case KIND_INT:
        return to_int(s, n);
    case KIND_FLOAT:
        return to_float(s, n);
    case KIND_BOOL:
        return Py_NewRef((n == 1 && s[0] == 't') ? Py_True : Py_False);
    case KIND_BYTEA:
        /* "\x00ff": events carry the hex digits only */
        return n >= 2 ? PyUnicode_DecodeUTF8(s + 2, n - 2, "strict") : PyUnicode_New(0, 0);
    default:
        return PyUnicode_DecodeUTF8(s, n, "strict");
    }
}

PyDoc_STRVAR(row_doc,
"row(payload, pos, names, kinds, unavailable) -> (row, unavailable_columns, end) | None\n\n"
"The TupleData at ``pos``: ``row`` maps ``names`` to the values, converted by ``kinds`` (one\n"
"byte per column: i, f, b, x or s); an unchanged TOASTed value is ``unavailable`` and its\n"
"column is in ``unavailable_columns``; ``end`` is where the tuple ends. None when the tuple is\n"
"not one this function decodes (the Python loop then does, and reports what is wrong).");

static PyObject *
row(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "row() takes 5 arguments");
        return NULL;
    }
    PyObject *payload = args[0], *names = args[2], *kinds = args[3], *marker = args[4];
    if (!PyBytes_Check(payload) || !PyTuple_Check(names) || !PyBytes_Check(kinds)) {
        PyErr_SetString(PyExc_TypeError, "row(bytes, int, tuple, bytes, object)");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) {
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(payload);
    Py_ssize_t size = PyBytes_GET_SIZE(payload);
    Py_ssize_t columns = PyTuple_GET_SIZE(names);
    const char *kind_of = PyBytes_AS_STRING(kinds);
    if (PyBytes_GET_SIZE(kinds) != columns || pos < 0 || pos + 2 > size) {
        Py_RETURN_NONE;
    }
    if (((Py_ssize_t)buf[pos] << 8 | buf[pos + 1]) != columns) {
        Py_RETURN_NONE;
    }
    pos += 2;

    PyObject *result = PyDict_New();
    PyObject *missing = NULL;
    if (result == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < columns; i++) {
        if (pos >= size) {
            goto fallback;
        }
        unsigned char kind = buf[pos];
        PyObject *value;
        if (kind == 't') {
            if (pos + 5 > size) {
                goto fallback;
            }
            uint32_t n = be32(buf + pos + 1);
            if (n > (uint32_t)(size - pos - 5)) {
                goto fallback;
            }
            value = convert(kind_of[i], (const char *)buf + pos + 5, (Py_ssize_t)n);
            if (value == NULL) {
                goto fallback;
            }
            pos += 5 + (Py_ssize_t)n;
        }
        else if (kind == 'n') {
            value = Py_NewRef(Py_None);
            pos += 1;
        }
        else if (kind == 'u') {
            if (missing == NULL && (missing = PyList_New(0)) == NULL) {
                goto error;
            }
            if (PyList_Append(missing, PyTuple_GET_ITEM(names, i)) < 0) {
                goto error;
            }
            value = Py_NewRef(marker);
            pos += 1;
        }
        else {
            goto fallback;
        }
        int failed = PyDict_SetItem(result, PyTuple_GET_ITEM(names, i), value);
        Py_DECREF(value);
        if (failed) {
            goto error;
        }
    }
    PyObject *unavailable = missing ? PyList_AsTuple(missing) : PyTuple_New(0);
    Py_XDECREF(missing);
    if (unavailable == NULL) {
        Py_DECREF(result);
        return NULL;
    }
    PyObject *end = PyLong_FromSsize_t(pos);
    if (end == NULL) {
        Py_DECREF(result);
        Py_DECREF(unavailable);
        return NULL;
    }
    PyObject *out = PyTuple_New(3);
    if (out == NULL) {
        Py_DECREF(result);
        Py_DECREF(unavailable);
        Py_DECREF(end);
        return NULL;
    }
    PyTuple_SET_ITEM(out, 0, result);
    PyTuple_SET_ITEM(out, 1, unavailable);
    PyTuple_SET_ITEM(out, 2, end);
    return out;

fallback:
    PyErr_Clear();
    Py_DECREF(result);
    Py_XDECREF(missing);
    Py_RETURN_NONE;
error:
    Py_DECREF(result);
    Py_XDECREF(missing);
    return NULL;
}

static PyMethodDef methods[] = {
    {"row", (PyCFunction)(void (*)(void))row, METH_FASTCALL, row_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "connectors.postgres._tuples",
    .m_doc = "pgoutput TupleData decoding in C (see connectors/postgres/pgoutput.py).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__tuples(void)
{
    return PyModuleDef_Init(&module);
}
