/* One 64-bit word in shared memory, compared and swapped atomically.
 *
 * A pool worker claims each task by moving its "tasks started" count from n to n + 1,
 * and the pool's manager takes unstarted tasks back by setting a flag in the same word;
 * both must be one atomic step, or a task could run twice (the worker starting it just
 * as the manager hands it to another worker). Python has no atomic operation on shared
 * memory, hence these few lines of C: one call per task, no system call.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    int64_t *word;
} AtomicWord;

static int
word_init(AtomicWord *self, PyObject *args, PyObject *kwds)
{
    PyObject *buffer;
    Py_ssize_t index = 0;
    static char *kwlist[] = {"buffer", "index", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|n", kwlist, &buffer, &index)) {
        return -1;
    }
    if (self->word != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "AtomicWord already initialised");
        return -1;
    }
    if (PyObject_GetBuffer(buffer, &self->view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        return -1;
    }
    char *start = (char *)self->view.buf + index * (Py_ssize_t)sizeof(int64_t);
    if (index < 0 || (index + 1) * (Py_ssize_t)sizeof(int64_t) > self->view.len
        || ((uintptr_t)start % sizeof(int64_t)) != 0) {
        PyBuffer_Release(&self->view);
        PyErr_SetString(PyExc_ValueError, "index out of the buffer, or not 8-byte aligned");
        return -1;
    }
    self->word = (int64_t *)start;
    return 0;
}

static void
word_dealloc(AtomicWord *self)
{
    if (self->word != NULL) {
        PyBuffer_Release(&self->view);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
check_ready(AtomicWord *self)
{
    if (self->word == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "AtomicWord not initialised");
        return -1;
    }
    return 0;
}

static PyObject *
word_compare_and_swap(AtomicWord *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "compare_and_swap(expected, new)");
        return NULL;
    }
    if (check_ready(self) < 0) {
        return NULL;
    }
    int64_t expected = PyLong_AsLongLong(args[0]);
    if (expected == -1 && PyErr_Occurred()) {
        return NULL;
    }
    int64_t desired = PyLong_AsLongLong(args[1]);
    if (desired == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (__atomic_compare_exchange_n(self->word, &expected, desired, 0, __ATOMIC_SEQ_CST,
                                    __ATOMIC_SEQ_CST)) {
        Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

static PyObject *
word_load(AtomicWord *self, PyObject *Py_UNUSED(ignored))
{
    if (check_ready(self) < 0) {
        return NULL;
    }
    return PyLong_FromLongLong(__atomic_load_n(self->word, __ATOMIC_SEQ_CST));
}

static PyObject *
word_store(AtomicWord *self, PyObject *arg)
{
    if (check_ready(self) < 0) {
        return NULL;
    }
    int64_t value = PyLong_AsLongLong(arg);
    if (value == -1 && PyErr_Occurred()) {
        return NULL;
    }
    __atomic_store_n(self->word, value, __ATOMIC_SEQ_CST);
    Py_RETURN_NONE;
}

static PyMethodDef word_methods[] = {
    {"compare_and_swap", (PyCFunction)(void (*)(void))word_compare_and_swap, METH_FASTCALL,
     "compare_and_swap(expected, new) -> bool: set the word to new if it holds expected."},
    {"load", (PyCFunction)word_load, METH_NOARGS, "load() -> int: the word's value."},
    {"store", (PyCFunction)word_store, METH_O, "store(value): set the word."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject AtomicWordType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "polyproc._os._atomic.AtomicWord",
    .tp_basicsize = sizeof(AtomicWord),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "AtomicWord(buffer, index=0): the index-th int64 of a writable buffer, "
              "read and written atomically.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)word_init,
    .tp_dealloc = (destructor)word_dealloc,
    .tp_methods = word_methods,
};

static struct PyModuleDef atomic_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "polyproc._os._atomic",
    .m_doc = "An int64 word in shared memory with atomic compare-and-swap.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__atomic(void)
{
    if (PyType_Ready(&AtomicWordType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&atomic_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&AtomicWordType);
    if (PyModule_AddObject(module, "AtomicWord", (PyObject *)&AtomicWordType) < 0) {
        Py_DECREF(&AtomicWordType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
