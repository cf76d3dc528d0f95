/* A counting semaphore in memory shared between processes, on Linux futexes.
 *
 * The state lives in a 64-byte slot of a shared mapping that the Python side owns (see
 * polyproc/_os/_shm.py); this type only holds a buffer reference that keeps the mapping
 * alive, and a pointer into it. Every process that maps the slot and wraps it in a
 * SemLock sees the same semaphore.
 *
 * Why native code: an uncontended acquire+release must cost about what the standard
 * library's C semaphore costs (tens of nanoseconds); no pure-Python lock gets there.
 *
 * Shared slot layout (all fields 32-bit, naturally aligned):
 *   value     the count; a futex word. Waiters sleep on it while it is 0.
 *   waiters   how many processes sleep on value, so release() wakes only when needed.
 *   owner     pid of the process holding a lock (maxvalue == 1), 0 when free. Lets a
 *             waiter notice that the holder died and take the lock over (see below).
 *   abandoned set to 1 when a waiter took over a lock whose holder had died; cleared by
 *             the next release. The Python layer reports it.
 *
 * Dead holders: a process killed while holding a lock never releases it. A waiter sleeps
 * in slices of at most OWNER_CHECK_NS and, between slices, checks with kill(owner, 0)
 * whether the holder still exists; if not, it takes the lock over with a compare-and-swap
 * on owner (one waiter wins) and sets abandoned. A recycled pid can hide a dead holder;
 * that is the documented limit.
 *
 * Recursion and thread ownership (RLock) are per process: they live in this object, as
 * in multiprocessing's SemLock, and the shared count stays 0/1.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "pythread.h"

#include <errno.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "_futex.h"

#define KIND_RECURSIVE_MUTEX 0
#define KIND_SEMAPHORE 1
#define SLOT_SIZE 64
#define OWNER_CHECK_NS 100000000LL /* 100 ms between checks for a dead holder */

typedef struct {
    _Atomic uint32_t value;
    _Atomic uint32_t waiters;
    _Atomic int32_t owner;
    _Atomic uint32_t abandoned;
} shared_state;

typedef struct {
    PyObject_HEAD
    Py_buffer view;         /* keeps the shared mapping alive */
    shared_state *state;
    int kind;
    unsigned int maxvalue;
    int count;              /* recursion depth held by this process */
    unsigned long last_tid; /* thread of this process that holds it */
    pid_t pid;              /* getpid() cached; refreshed after fork */
    pid_t took_over_from;   /* dead holder whose lock the last slow acquire took over */
} SemLockObject;

/* Warning category for a lock taken over from a dead holder; set by the Python layer. */
static PyObject *abandoned_warning = NULL;

static int
try_take(shared_state *s)
{
    uint32_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
    while (v > 0) {
        if (atomic_compare_exchange_weak_explicit(&s->value, &v, v - 1,
                                                  memory_order_acquire,
                                                  memory_order_relaxed)) {
            return 1;
        }
    }
    return 0;
}

static pid_t
current_pid(SemLockObject *self)
{
    /* getpid() is cheap but not free; fork is rare, so cache and verify lazily. */
    if (self->pid == 0) {
        self->pid = getpid();
    }
    return self->pid;
}

static void
mark_owner(SemLockObject *self)
{
    if (self->maxvalue == 1) {
        atomic_store_explicit(&self->state->owner, current_pid(self), memory_order_relaxed);
    }
}

/* Take over a lock whose holder has died. Returns 1 if we now hold it. */
static int
take_over_from_dead_owner(SemLockObject *self)
{
    shared_state *s = self->state;
    int32_t owner = atomic_load(&s->owner);
    if (self->maxvalue != 1 || owner <= 0 || owner == self->pid) {
        return 0;
    }
    if (kill(owner, 0) == 0 || errno != ESRCH) {
        return 0;
    }
    if (atomic_load(&s->value) != 0) {
        return 0; /* released meanwhile: take it the normal way */
    }
    int32_t dead = owner;
    if (atomic_compare_exchange_strong(&s->owner, &owner, self->pid)) {
        atomic_store(&s->abandoned, 1);
        self->took_over_from = dead;
        return 1;
    }
    return 0;
}

/* Wait for the semaphore with the GIL released. deadline_ns < 0 waits forever.
 * Returns 1 acquired, 0 timed out, -1 interrupted by a signal (GIL not held). */
static int
wait_slow(SemLockObject *self, long long deadline_ns)
{
    shared_state *s = self->state;
    for (;;) {
        if (try_take(s)) {
            return 1;
        }
        if (take_over_from_dead_owner(self)) {
            return 1;
        }
        long long slice = OWNER_CHECK_NS;
        if (deadline_ns >= 0) {
            long long left = deadline_ns - monotonic_ns();
            if (left <= 0) {
                return 0;
            }
            if (left < slice) {
                slice = left;
            }
        }
        struct timespec ts = {slice / 1000000000LL, slice % 1000000000LL};
        atomic_fetch_add(&s->waiters, 1);
        long rc = 0;
        if (atomic_load(&s->value) == 0) {
            rc = futex(&s->value, FUTEX_WAIT, 0, &ts);
        }
        int err = errno;
        atomic_fetch_sub(&s->waiters, 1);
        if (rc == -1 && err == EINTR) {
            return -1;
        }
    }
}

static PyObject *semlock_release(SemLockObject *self, PyObject *Py_UNUSED(ignored));

static PyObject *
semlock_acquire(SemLockObject *self, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames)
{
    static const char *const names[] = {"block", "timeout"};
    int block = 1;
    PyObject *timeout_obj = Py_None;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;

    if (nargs + nkw > 2) {
        PyErr_SetString(PyExc_TypeError, "acquire() takes at most 2 arguments");
        return NULL;
    }
    PyObject *given[2] = {NULL, NULL};
    for (Py_ssize_t i = 0; i < nargs; i++) {
        given[i] = args[i];
    }
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        int slot = -1;
        for (int j = 0; j < 2; j++) {
            if (PyUnicode_CompareWithASCIIString(key, names[j]) == 0) {
                slot = j;
            }
        }
        if (slot < 0 || given[slot] != NULL) {
            PyErr_Format(PyExc_TypeError, "acquire() got an unexpected keyword argument %R", key);
            return NULL;
        }
        given[slot] = args[nargs + i];
    }
    if (given[0] != NULL) {
        block = PyObject_IsTrue(given[0]);
        if (block < 0) {
            return NULL;
        }
    }
    if (given[1] != NULL) {
        timeout_obj = given[1];
    }

    unsigned long tid = PyThread_get_thread_ident();
    if (self->kind == KIND_RECURSIVE_MUTEX && self->count > 0 && self->last_tid == tid) {
        self->count++;
        Py_RETURN_TRUE;
    }
    if (try_take(self->state)) {
        goto acquired;
    }
    if (!block) {
        Py_RETURN_FALSE;
    }
    long long deadline = -1;
    if (timeout_obj != Py_None) {
        double t = PyFloat_AsDouble(timeout_obj);
        if (t == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
        if (t < 0) {
            t = 0;
        }
        deadline = monotonic_ns() + (long long)(t * 1e9);
    }
    current_pid(self);
    self->took_over_from = 0;
    for (;;) {
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = wait_slow(self, deadline);
        Py_END_ALLOW_THREADS
        if (rc == 1) {
            break;
        }
        if (rc == 0) {
            Py_RETURN_FALSE;
        }
        if (PyErr_CheckSignals() < 0) {
            return NULL; /* e.g. KeyboardInterrupt */
        }
    }
acquired:
    mark_owner(self);
    self->count++;
    self->last_tid = tid;
    if (self->took_over_from != 0) {
        pid_t dead = self->took_over_from;
        self->took_over_from = 0;
        PyObject *category = abandoned_warning ? abandoned_warning : PyExc_RuntimeWarning;
        if (PyErr_WarnFormat(category, 1,
                             "took over a lock whose holder (pid %d) died holding it; "
                             "the state it protects may be inconsistent", (int)dead) < 0) {
            /* The warning is an error here: do not keep a lock the caller thinks it
             * failed to get. */
            PyObject *type, *value, *traceback;
            PyErr_Fetch(&type, &value, &traceback);
            PyObject *r = semlock_release(self, NULL);
            Py_XDECREF(r);
            PyErr_Restore(type, value, traceback);
            return NULL;
        }
    }
    Py_RETURN_TRUE;
}

/* Mark the lock free of an owner before the count goes up. Relaxed stores: the
 * compare-and-swap or fetch-add that follows orders them (a full barrier on x86), and a
 * seq_cst store here would cost a barrier of its own on every release. */
static void
clear_owner(shared_state *s)
{
    atomic_store_explicit(&s->owner, 0, memory_order_relaxed);
    if (atomic_load_explicit(&s->abandoned, memory_order_relaxed)) {
        atomic_store_explicit(&s->abandoned, 0, memory_order_relaxed);
    }
}

static PyObject *
semlock_release(SemLockObject *self, PyObject *Py_UNUSED(ignored))
{
    shared_state *s = self->state;
    if (self->kind == KIND_RECURSIVE_MUTEX) {
        if (self->count == 0 || self->last_tid != PyThread_get_thread_ident()) {
            PyErr_SetString(PyExc_AssertionError,
                            "attempt to release recursive lock not owned by thread");
            return NULL;
        }
        if (self->count > 1) {
            self->count--;
            Py_RETURN_NONE;
        }
        clear_owner(s);
        atomic_fetch_add(&s->value, 1); /* seq_cst: ordered before the read of waiters */
    }
    else {
        /* Bounded: a release past maxvalue is an error, as in multiprocessing. */
        uint32_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
        if (self->maxvalue == 1) {
            if (v >= 1) {
                goto too_many;
            }
            clear_owner(s);
        }
        for (;;) {
            if (v >= self->maxvalue) {
                goto too_many;
            }
            if (atomic_compare_exchange_weak(&s->value, &v, v + 1)) {
                break;
            }
        }
    }
    if (self->count > 0) {
        self->count--;
    }
    if (atomic_load(&s->waiters) > 0) {
        futex(&s->value, FUTEX_WAKE, 1, NULL);
    }
    Py_RETURN_NONE;
too_many:
    PyErr_SetString(PyExc_ValueError, "semaphore or lock released too many times");
    return NULL;
}

static PyObject *
semlock_exit(SemLockObject *self, PyObject *args)
{
    return semlock_release(self, NULL);
}

static PyObject *
semlock_count(SemLockObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(self->count);
}

static PyObject *
semlock_is_mine(SemLockObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->count > 0 && self->last_tid == PyThread_get_thread_ident());
}

static PyObject *
semlock_get_value(SemLockObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLong(atomic_load(&self->state->value));
}

static PyObject *
semlock_is_zero(SemLockObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(atomic_load(&self->state->value) == 0);
}

static PyObject *
semlock_owner(SemLockObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(atomic_load(&self->state->owner));
}

static PyObject *
semlock_take_abandoned(SemLockObject *self, PyObject *Py_UNUSED(ignored))
{
    /* True once after this process took over the lock from a dead holder. */
    uint32_t one = 1;
    int was = atomic_compare_exchange_strong(&self->state->abandoned, &one, 0);
    return PyBool_FromLong(was && atomic_load(&self->state->owner) == current_pid(self));
}

static PyObject *
semlock_after_fork(SemLockObject *self, PyObject *Py_UNUSED(ignored))
{
    /* A forked child holds nothing, whatever the parent held. */
    self->count = 0;
    self->pid = 0;
    Py_RETURN_NONE;
}

static int
semlock_init(SemLockObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"buffer", "offset", "kind", "value", "maxvalue", "initialize", NULL};
    PyObject *buffer;
    Py_ssize_t offset;
    int kind, initialize;
    unsigned int value, maxvalue;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OniIIp", kwlist, &buffer, &offset, &kind,
                                     &value, &maxvalue, &initialize)) {
        return -1;
    }
    if (kind != KIND_RECURSIVE_MUTEX && kind != KIND_SEMAPHORE) {
        PyErr_SetString(PyExc_ValueError, "unrecognized kind");
        return -1;
    }
    if (self->view.obj != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "SemLock already initialized");
        return -1;
    }
    if (PyObject_GetBuffer(buffer, &self->view, PyBUF_WRITABLE) < 0) {
        return -1;
    }
    if (offset < 0 || offset % 4 != 0 || offset + SLOT_SIZE > self->view.len) {
        PyBuffer_Release(&self->view);
        PyErr_SetString(PyExc_ValueError, "slot offset outside the buffer or misaligned");
        return -1;
    }
    self->state = (shared_state *)((char *)self->view.buf + offset);
    self->kind = kind;
    self->maxvalue = maxvalue;
    self->count = 0;
    self->last_tid = 0;
    self->pid = 0;
    if (initialize) {
        atomic_store(&self->state->waiters, 0);
        atomic_store(&self->state->owner, 0);
        atomic_store(&self->state->abandoned, 0);
        atomic_store(&self->state->value, value);
    }
    return 0;
}

static void
semlock_dealloc(SemLockObject *self)
{
    if (self->view.obj != NULL) {
        PyBuffer_Release(&self->view);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef semlock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))semlock_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(block=True, timeout=None) -> bool"},
    {"release", (PyCFunction)semlock_release, METH_NOARGS, "release()"},
    {"__enter__", (PyCFunction)(void (*)(void))semlock_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire()"},
    {"__exit__", (PyCFunction)semlock_exit, METH_VARARGS, "release()"},
    {"_count", (PyCFunction)semlock_count, METH_NOARGS, "recursion depth in this process"},
    {"_is_mine", (PyCFunction)semlock_is_mine, METH_NOARGS, "held by the calling thread"},
    {"_get_value", (PyCFunction)semlock_get_value, METH_NOARGS, "the shared count"},
    {"_is_zero", (PyCFunction)semlock_is_zero, METH_NOARGS, "whether the count is 0"},
    {"_owner", (PyCFunction)semlock_owner, METH_NOARGS, "pid of the holder of a lock, or 0"},
    {"_take_abandoned", (PyCFunction)semlock_take_abandoned, METH_NOARGS,
     "true once after taking over a lock from a dead holder"},
    {"_after_fork", (PyCFunction)semlock_after_fork, METH_NOARGS, "reset after fork"},
    {NULL, NULL, 0, NULL},
};

static PyObject *
set_abandoned_warning(PyObject *module, PyObject *category)
{
    Py_XINCREF(category);
    Py_XSETREF(abandoned_warning, category);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"set_abandoned_warning", set_abandoned_warning, METH_O,
     "Warning category issued when a lock is taken over from a dead holder."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SemLockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "polyproc._os._semaphore.SemLock",
    .tp_basicsize = sizeof(SemLockObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "SemLock(buffer, offset, kind, value, maxvalue, initialize)\n\n"
              "A semaphore whose state is the 64-byte slot at *offset* of the shared, "
              "writable *buffer*.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)semlock_init,
    .tp_dealloc = (destructor)semlock_dealloc,
    .tp_methods = semlock_methods,
};

static struct PyModuleDef semaphore_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "polyproc._os._semaphore",
    .m_doc = "Process-shared semaphores on futexes (see the C source's header comment).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__semaphore(void)
{
    if (PyType_Ready(&SemLockType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&semaphore_module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&SemLockType);
    if (PyModule_AddObject(m, "SemLock", (PyObject *)&SemLockType) < 0 ||
        PyModule_AddIntConstant(m, "RECURSIVE_MUTEX", KIND_RECURSIVE_MUTEX) < 0 ||
        PyModule_AddIntConstant(m, "SEMAPHORE", KIND_SEMAPHORE) < 0 ||
        PyModule_AddIntConstant(m, "SLOT_SIZE", SLOT_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "SEM_VALUE_MAX", 0x7fffffff) < 0) {
        Py_DECREF(&SemLockType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
