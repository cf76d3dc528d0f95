/* A multi-producer, multi-consumer message ring in a memfd shared between processes.
 *
 * The core of polyproc's queues. A put copies the message into shared memory at once, in
 * the caller's thread: nothing waits in a feeder thread, so a process can put and exit
 * at once without losing anything, and nobody needs to join a feeder before exiting.
 *
 * Memory: one memfd. Its first page is the header (below); the data ring follows. An
 * unbounded queue never blocks a put: when a message does not fit, the producer grows
 * the ring (doubling, with ftruncate), so a child that puts a lot and exits before anyone
 * reads never deadlocks a join. Other processes notice the new capacity in the header and
 * map the larger ring before they touch data. The header page never moves, so futex words
 * in it stay valid while the data mapping changes.
 *
 * Records: an 8-byte head (length, flags) and the payload, padded to 8 bytes; positions
 * are absolute byte counts, taken modulo the capacity, so a record may wrap around.
 *
 * Locks: one for producers, one for consumers. Each is a word holding the holder's pid
 * (0 when free) with a futex; a waiter that finds the holder dead (kill(pid, 0) fails
 * with ESRCH, checked every LOCK_CHECK_NS) takes the lock over. That is safe here: a
 * producer publishes a record only by moving tail at the end, a consumer consumes it
 * only by moving head at the end, so a process killed half-way leaves nothing visible.
 * Waiting for data or for space happens *without* a lock, on the data_seq / space_seq
 * futex words, so a consumer killed while blocked in get() holds nothing.
 *
 * Within one process the GIL serialises every operation on a Ring object; it is released
 * only while sleeping on a futex. Copies of large messages happen with the GIL held: they
 * are one memcpy each way.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "_futex.h"

#define HEADER_SIZE 4096
#define RECORD_HEAD 8
#define FLAG_RAW 1u
#define LOCK_CHECK_NS 100000000LL /* 100 ms */
#define MAGIC 0x706f6c79u          /* "poly" */
#define SPINS 64
#define GROW_GRACE_NS 2000000LL /* 2 ms: how long a put waits for room before growing */
#define GROW_GRACE_MESSAGES 4   /* ... once the ring holds this many messages of its size */

typedef struct {
    uint32_t magic;
    uint32_t maxsize;             /* 0: unbounded (count-based, as queue.Queue) */
    _Atomic uint64_t capacity;    /* bytes in the data ring */
    _Atomic uint64_t head;        /* absolute position of the next record to read */
    _Atomic uint64_t tail;        /* absolute position where the next record goes */
    _Atomic uint32_t count;       /* records in the ring */
    _Atomic uint32_t data_seq;    /* bumped by every put; consumers sleep on it */
    _Atomic uint32_t space_seq;   /* bumped by every get; producers of a full queue sleep on it */
    _Atomic uint32_t readers_waiting;
    _Atomic uint32_t writers_waiting;
    _Atomic int32_t put_lock;     /* pid of the producer inside put, 0 when free */
    _Atomic int32_t get_lock;     /* pid of the consumer inside get, 0 when free */
    _Atomic uint32_t lock_waiters;
    _Atomic uint32_t unfinished;  /* JoinableQueue: put minus task_done */
    _Atomic uint32_t unfinished_seq;
    _Atomic uint32_t readers_active; /* consumers inside get() now (waiting or copying) */
    _Atomic uint32_t doorbell_armed; /* set once a consumer waits on the doorbell fd */
} ring_header;

typedef struct {
    PyObject_HEAD
    int fd;
    ring_header *hdr;
    char *data;
    uint64_t mapped;  /* capacity this process has mapped */
    pid_t pid;
    int doorbell_fd;  /* an eventfd rung after each put once armed; -1: none */
    PyObject *weakreflist;
} RingObject;

static PyObject *FullError = NULL;
static PyObject *EmptyError = NULL;

/* Sleep on *word while it equals expected, at most until deadline (or LOCK_CHECK_NS when
 * slice is set). Returns -1 on EINTR, 0 otherwise. GIL must be released. */
static int
sleep_on(_Atomic uint32_t *word, uint32_t expected, long long deadline_ns, int slice)
{
    long long span = slice ? LOCK_CHECK_NS : -1;
    if (deadline_ns >= 0) {
        long long left = deadline_ns - monotonic_ns();
        if (left <= 0) {
            return 0;
        }
        if (span < 0 || left < span) {
            span = left;
        }
    }
    struct timespec ts, *tsp = NULL;
    if (span >= 0) {
        ts.tv_sec = span / 1000000000LL;
        ts.tv_nsec = span % 1000000000LL;
        tsp = &ts;
    }
    if (futex(word, FUTEX_WAIT, expected, tsp) == -1 && errno == EINTR) {
        return -1;
    }
    return 0;
}

static pid_t
my_pid(RingObject *self)
{
    if (self->pid == 0) {
        self->pid = getpid();
    }
    return self->pid;
}

/* ---- the pid locks ---------------------------------------------------------------- */

static int
lock_try(_Atomic int32_t *lock, pid_t me)
{
    int32_t expected = 0;
    return atomic_compare_exchange_strong(lock, &expected, me);
}

static int
lock_take_over(_Atomic int32_t *lock, pid_t me)
{
    int32_t holder = atomic_load(lock);
    if (holder > 0 && holder != me && kill(holder, 0) == -1 && errno == ESRCH) {
        return atomic_compare_exchange_strong(lock, &holder, me);
    }
    return 0;
}

/* Acquire with the GIL released. Returns 1, 0 on timeout, -1 on EINTR. */
static int
lock_acquire_slow(RingObject *self, _Atomic int32_t *lock, long long deadline_ns)
{
    pid_t me = my_pid(self);
    for (int i = 0; i < SPINS; i++) {
        if (atomic_load_explicit(lock, memory_order_relaxed) == 0 && lock_try(lock, me)) {
            return 1;
        }
    }
    for (;;) {
        if (lock_try(lock, me) || lock_take_over(lock, me)) {
            return 1;
        }
        if (deadline_ns >= 0 && monotonic_ns() >= deadline_ns) {
            return 0;
        }
        atomic_fetch_add(&self->hdr->lock_waiters, 1);
        int32_t holder = atomic_load(lock);
        int rc = 0;
        if (holder != 0) {
            rc = sleep_on((_Atomic uint32_t *)lock, (uint32_t)holder, deadline_ns, 1);
        }
        atomic_fetch_sub(&self->hdr->lock_waiters, 1);
        if (rc < 0) {
            return -1;
        }
    }
}

static void
lock_release(RingObject *self, _Atomic int32_t *lock)
{
    atomic_store(lock, 0);
    if (atomic_load(&self->hdr->lock_waiters) > 0) {
        futex((_Atomic uint32_t *)lock, FUTEX_WAKE, 1, NULL);
    }
}

/* Acquire *lock* (GIL held on entry and exit). Returns 1, 0 on timeout, -1 with an
 * exception set. */
static int
lock_acquire(RingObject *self, _Atomic int32_t *lock, long long deadline_ns)
{
    if (lock_try(lock, my_pid(self))) {
        return 1;
    }
    for (;;) {
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = lock_acquire_slow(self, lock, deadline_ns);
        Py_END_ALLOW_THREADS
        if (rc >= 0) {
            return rc;
        }
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
    }
}

/* ---- mapping ---------------------------------------------------------------------- */

static int
map_data(RingObject *self)
{
    uint64_t capacity = atomic_load(&self->hdr->capacity);
    if (capacity == self->mapped) {
        return 0;
    }
    void *p = mmap(NULL, capacity, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, HEADER_SIZE);
    if (p == MAP_FAILED) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (self->data != NULL) {
        munmap(self->data, self->mapped);
    }
    self->data = p;
    self->mapped = capacity;
    return 0;
}

static void
copy_in(RingObject *self, uint64_t pos, const char *src, uint64_t n)
{
    uint64_t cap = self->mapped, at = pos % cap, first = cap - at;
    if (n <= first) {
        memcpy(self->data + at, src, n);
    }
    else {
        memcpy(self->data + at, src, first);
        memcpy(self->data, src + first, n - first);
    }
}

static void
copy_out(RingObject *self, uint64_t pos, char *dst, uint64_t n)
{
    uint64_t cap = self->mapped, at = pos % cap, first = cap - at;
    if (n <= first) {
        memcpy(dst, self->data + at, n);
    }
    else {
        memcpy(dst, self->data + at, first);
        memcpy(dst + first, self->data, n - first);
    }
}

static uint64_t
padded(uint64_t n)
{
    return (n + 7) & ~(uint64_t)7;
}

/* Grow the ring to hold at least `need` more bytes. Called holding the put lock; takes
 * the get lock so that no consumer reads while records move. */
static int
grow(RingObject *self, uint64_t need, long long deadline_ns)
{
    ring_header *h = self->hdr;
    int rc = lock_acquire(self, &h->get_lock, -1);
    if (rc <= 0) {
        return -1;
    }
    if (map_data(self) < 0) {
        lock_release(self, &h->get_lock);
        return -1;
    }
    uint64_t old_cap = self->mapped;
    uint64_t head = atomic_load(&h->head), tail = atomic_load(&h->tail);
    uint64_t used = tail - head;
    uint64_t new_cap = old_cap;
    while (new_cap - used < need) {
        new_cap *= 2;
    }
    if (new_cap == old_cap) {
        lock_release(self, &h->get_lock);
        return 0;
    }
    char *saved = NULL;
    if (used > 0) {
        saved = PyMem_Malloc(used);
        if (saved == NULL) {
            lock_release(self, &h->get_lock);
            PyErr_NoMemory();
            return -1;
        }
        copy_out(self, head, saved, used);
    }
    if (ftruncate(self->fd, HEADER_SIZE + new_cap) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        PyMem_Free(saved);
        lock_release(self, &h->get_lock);
        return -1;
    }
    atomic_store(&h->capacity, new_cap);
    if (map_data(self) < 0) {
        PyMem_Free(saved);
        lock_release(self, &h->get_lock);
        return -1;
    }
    if (used > 0) {
        copy_in(self, head, saved, used);
        PyMem_Free(saved);
    }
    lock_release(self, &h->get_lock);
    return 0;
}

static long long
deadline_from(PyObject *timeout)
{
    if (timeout == Py_None) {
        return -1;
    }
    double t = PyFloat_AsDouble(timeout);
    if (t == -1.0 && PyErr_Occurred()) {
        return -2;
    }
    if (t < 0) {
        PyErr_SetString(PyExc_ValueError, "'timeout' must be a non-negative number");
        return -2;
    }
    return monotonic_ns() + (long long)(t * 1e9);
}

/* ---- put / get -------------------------------------------------------------------- */

/* put(data, raw=False, block=True, timeout=None) */
static PyObject *
ring_put(RingObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"data", "raw", "block", "timeout", NULL};
    Py_buffer buf;
    int raw = 0, block = 1;
    PyObject *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*|ppO", kwlist, &buf, &raw, &block,
                                     &timeout)) {
        return NULL;
    }
    ring_header *h = self->hdr;
    long long deadline = -1;
    PyObject *result = NULL;
    if (!block) {
        deadline = 0;
    }
    else if ((deadline = deadline_from(timeout)) == -2) {
        goto done;
    }
    uint64_t total = RECORD_HEAD + padded(buf.len);
    if ((uint64_t)buf.len > 0xffffffffu) {
        PyErr_SetString(PyExc_ValueError, "message too large for a queue (4 GiB at most)");
        goto done;
    }
    /* A bounded queue: wait, without a lock, until there is room for one more; then
     * check again under the lock, since another producer may have taken the room. */
    for (;;) {
        if (h->maxsize > 0) {
            uint32_t seq = atomic_load(&h->space_seq);
            if (atomic_load(&h->count) >= h->maxsize) {
                if (deadline == 0 || (deadline > 0 && monotonic_ns() >= deadline)) {
                    PyErr_SetNone(FullError);
                    goto done;
                }
                int rc;
                atomic_fetch_add(&h->writers_waiting, 1);
                Py_BEGIN_ALLOW_THREADS
                rc = (atomic_load(&h->count) >= h->maxsize)
                         ? sleep_on(&h->space_seq, seq, deadline, 0)
                         : 0;
                Py_END_ALLOW_THREADS
                atomic_fetch_sub(&h->writers_waiting, 1);
                if (rc < 0 && PyErr_CheckSignals() < 0) {
                    goto done;
                }
                continue;
            }
        }
        if (lock_acquire(self, &h->put_lock, -1) <= 0) {
            goto done;
        }
        if (h->maxsize == 0 || atomic_load(&h->count) < h->maxsize) {
            break;
        }
        lock_release(self, &h->put_lock);
    }
    if (map_data(self) < 0) {
        lock_release(self, &h->put_lock);
        goto done;
    }
    uint64_t tail = atomic_load(&h->tail);
    uint64_t head = atomic_load(&h->head);
    if (self->mapped - (tail - head) < total && self->mapped >= GROW_GRACE_MESSAGES * total &&
        atomic_load(&h->readers_active) > 0) {
        /* Full, but consumers are at work and the ring already holds several messages of
         * this size: give them GROW_GRACE_NS to make room before growing. Growing costs
         * fresh pages the kernel must zero, so a ring that grows whenever producers are
         * briefly ahead ends up slower than one that waits a little; a ring smaller than
         * a few messages would make producer and consumer take turns instead of
         * overlapping. The wait is bounded: an unbounded put never blocks for long. */
        uint32_t seq = atomic_load(&h->space_seq);
        lock_release(self, &h->put_lock);
        atomic_fetch_add(&h->writers_waiting, 1);
        Py_BEGIN_ALLOW_THREADS
        sleep_on(&h->space_seq, seq, monotonic_ns() + GROW_GRACE_NS, 0);
        Py_END_ALLOW_THREADS
        atomic_fetch_sub(&h->writers_waiting, 1);
        if (PyErr_CheckSignals() < 0 || lock_acquire(self, &h->put_lock, -1) <= 0) {
            goto done;
        }
        if (map_data(self) < 0) {
            lock_release(self, &h->put_lock);
            goto done;
        }
        tail = atomic_load(&h->tail);
        head = atomic_load(&h->head);
    }
    if (self->mapped - (tail - head) < total) {
        if (grow(self, total, deadline) < 0) {
            lock_release(self, &h->put_lock);
            goto done;
        }
        head = atomic_load(&h->head);
    }
    uint32_t record[2] = {(uint32_t)buf.len, raw ? FLAG_RAW : 0};
    copy_in(self, tail, (const char *)record, RECORD_HEAD);
    copy_in(self, tail + RECORD_HEAD, buf.buf, buf.len);
    atomic_store(&h->tail, tail + total); /* publish */
    atomic_fetch_add(&h->unfinished, 1);
    atomic_fetch_add(&h->count, 1);
    atomic_fetch_add(&h->data_seq, 1);
    lock_release(self, &h->put_lock);
    if (atomic_load(&h->readers_waiting) > 0) {
        futex(&h->data_seq, FUTEX_WAKE, 1, NULL);
    }
    if (self->doorbell_fd >= 0 && atomic_load(&h->doorbell_armed)) {
        /* Rung after the record is published, so a consumer woken by it finds the
         * record. A full counter (EAGAIN) still reads as ready: nothing to do. */
        uint64_t one = 1;
        if (write(self->doorbell_fd, &one, sizeof one) < 0) {
            errno = 0;
        }
    }
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&buf);
    return result;
}

static PyObject *ring_take(RingObject *self, ring_header *h, long long deadline);

/* get(block=True, timeout=None) -> (raw: bool, data: bytes) */
static PyObject *
ring_get(RingObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"block", "timeout", NULL};
    int block = 1;
    PyObject *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|pO", kwlist, &block, &timeout)) {
        return NULL;
    }
    ring_header *h = self->hdr;
    long long deadline = 0;
    if (block && (deadline = deadline_from(timeout)) == -2) {
        return NULL;
    }
    /* A consumer killed inside get() leaves this count high: producers then wait their
     * short grace before growing, which costs time, not correctness. */
    atomic_fetch_add(&h->readers_active, 1);
    PyObject *result = ring_take(self, h, deadline);
    atomic_fetch_sub(&h->readers_active, 1);
    return result;
}

static PyObject *
ring_take(RingObject *self, ring_header *h, long long deadline)
{
    for (;;) {
        uint32_t seq = atomic_load(&h->data_seq);
        if (atomic_load(&h->count) > 0) {
            int got = lock_acquire(self, &h->get_lock, -1);
            if (got <= 0) {
                return NULL;
            }
            uint64_t head = atomic_load(&h->head);
            if (head == atomic_load(&h->tail)) { /* another consumer was first */
                lock_release(self, &h->get_lock);
                continue;
            }
            if (map_data(self) < 0) {
                lock_release(self, &h->get_lock);
                return NULL;
            }
            uint32_t record[2];
            copy_out(self, head, (char *)record, RECORD_HEAD);
            PyObject *data = PyBytes_FromStringAndSize(NULL, record[0]);
            if (data == NULL) {
                lock_release(self, &h->get_lock);
                return NULL;
            }
            copy_out(self, head + RECORD_HEAD, PyBytes_AS_STRING(data), record[0]);
            atomic_store(&h->head, head + RECORD_HEAD + padded(record[0])); /* consume */
            atomic_fetch_sub(&h->count, 1);
            atomic_fetch_add(&h->space_seq, 1);
            lock_release(self, &h->get_lock);
            if (atomic_load(&h->writers_waiting) > 0) {
                futex(&h->space_seq, FUTEX_WAKE, 1, NULL);
            }
            PyObject *result = PyTuple_Pack(2, (record[1] & FLAG_RAW) ? Py_True : Py_False, data);
            Py_DECREF(data);
            return result;
        }
        if (deadline == 0 || (deadline > 0 && monotonic_ns() >= deadline)) {
            PyErr_SetNone(EmptyError);
            return NULL;
        }
        int rc;
        atomic_fetch_add(&h->readers_waiting, 1);
        Py_BEGIN_ALLOW_THREADS
        rc = atomic_load(&h->count) == 0 ? sleep_on(&h->data_seq, seq, deadline, 0) : 0;
        Py_END_ALLOW_THREADS
        atomic_fetch_sub(&h->readers_waiting, 1);
        if (rc < 0 && PyErr_CheckSignals() < 0) {
            return NULL;
        }
    }
}

static PyObject *
ring_task_done(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    ring_header *h = self->hdr;
    uint32_t n = atomic_load(&h->unfinished);
    do {
        if (n == 0) {
            PyErr_SetString(PyExc_ValueError, "task_done() called too many times");
            return NULL;
        }
    } while (!atomic_compare_exchange_weak(&h->unfinished, &n, n - 1));
    if (n == 1) {
        atomic_fetch_add(&h->unfinished_seq, 1);
        futex(&h->unfinished_seq, FUTEX_WAKE, INT32_MAX, NULL);
    }
    Py_RETURN_NONE;
}

/* join(timeout=None) -> bool: wait until every item put has been marked done. */
static PyObject *
ring_join(RingObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"timeout", NULL};
    PyObject *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O", kwlist, &timeout)) {
        return NULL;
    }
    long long deadline = deadline_from(timeout);
    if (deadline == -2) {
        return NULL;
    }
    ring_header *h = self->hdr;
    for (;;) {
        uint32_t seq = atomic_load(&h->unfinished_seq);
        if (atomic_load(&h->unfinished) == 0) {
            Py_RETURN_TRUE;
        }
        if (deadline >= 0 && monotonic_ns() >= deadline) {
            Py_RETURN_FALSE;
        }
        int rc;
        Py_BEGIN_ALLOW_THREADS
        /* Slices: task_done() wakes on the sequence, but a slice also bounds a lost race. */
        rc = atomic_load(&h->unfinished) ? sleep_on(&h->unfinished_seq, seq, deadline, 1) : 0;
        Py_END_ALLOW_THREADS
        if (rc < 0 && PyErr_CheckSignals() < 0) {
            return NULL;
        }
    }
}

static PyObject *
ring_qsize(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLong(atomic_load(&self->hdr->count));
}

static PyObject *
ring_capacity(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLongLong(atomic_load(&self->hdr->capacity));
}

static PyObject *
ring_maxsize(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLong(self->hdr->maxsize);
}

static PyObject *
ring_after_fork(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    self->pid = 0;
    Py_RETURN_NONE;
}

/* Ring(fd, create, maxsize=0, capacity=65536, doorbell=-1) */
static int
ring_init(RingObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fd", "create", "maxsize", "capacity", "doorbell", NULL};
    int fd, create, doorbell = -1;
    unsigned int maxsize = 0;
    unsigned long long capacity = 65536;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "ip|IKi", kwlist, &fd, &create, &maxsize,
                                     &capacity, &doorbell)) {
        return -1;
    }
    if (self->hdr != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Ring already initialized");
        return -1;
    }
    if (capacity < 4096 || (capacity & (capacity - 1)) != 0) {
        PyErr_SetString(PyExc_ValueError, "capacity must be a power of two >= 4096");
        return -1;
    }
    if (create && ftruncate(fd, HEADER_SIZE + capacity) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    void *p = mmap(NULL, HEADER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->hdr = p;
    self->fd = fd;
    self->data = NULL;
    self->mapped = 0;
    self->pid = 0;
    self->doorbell_fd = doorbell;
    if (create) {
        memset(p, 0, sizeof(ring_header));
        self->hdr->maxsize = maxsize;
        atomic_store(&self->hdr->capacity, capacity);
        self->hdr->magic = MAGIC;
    }
    else if (self->hdr->magic != MAGIC) {
        PyErr_SetString(PyExc_ValueError, "not a polyproc queue");
        return -1;
    }
    return map_data(self);
}

static void
ring_dealloc(RingObject *self)
{
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    if (self->data != NULL) {
        munmap(self->data, self->mapped);
    }
    if (self->hdr != NULL) {
        munmap(self->hdr, HEADER_SIZE);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* From now on every put, in every process, rings the doorbell fd. Never disarmed: a
 * consumer that waits with select/poll on the fd must not miss a put. */
static PyObject *
ring_arm_doorbell(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->doorbell_fd < 0) {
        PyErr_SetString(PyExc_ValueError, "this ring has no doorbell");
        return NULL;
    }
    atomic_store(&self->hdr->doorbell_armed, 1);
    Py_RETURN_NONE;
}

static PyMethodDef ring_methods[] = {
    {"arm_doorbell", (PyCFunction)ring_arm_doorbell, METH_NOARGS,
     "arm_doorbell(): from now on every put writes 1 to the doorbell eventfd"},
    {"put", (PyCFunction)(void (*)(void))ring_put, METH_VARARGS | METH_KEYWORDS,
     "put(data, raw=False, block=True, timeout=None): copy one message in."},
    {"get", (PyCFunction)(void (*)(void))ring_get, METH_VARARGS | METH_KEYWORDS,
     "get(block=True, timeout=None) -> (raw, data): take one message out."},
    {"task_done", (PyCFunction)ring_task_done, METH_NOARGS, "one put item is processed"},
    {"join", (PyCFunction)(void (*)(void))ring_join, METH_VARARGS | METH_KEYWORDS,
     "join(timeout=None) -> bool: wait until every item is done"},
    {"qsize", (PyCFunction)ring_qsize, METH_NOARGS, "messages in the ring"},
    {"capacity", (PyCFunction)ring_capacity, METH_NOARGS, "bytes the ring holds now"},
    {"maxsize", (PyCFunction)ring_maxsize, METH_NOARGS, "the bound on messages, 0 if none"},
    {"_after_fork", (PyCFunction)ring_after_fork, METH_NOARGS, "forget the cached pid"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "polyproc._os._ring.Ring",
    .tp_basicsize = sizeof(RingObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Ring(fd, create, maxsize=0, capacity=65536, doorbell=-1)\n\n"
              "A message ring in the memfd *fd*; *create* initialises it; *doorbell* is\n"
              "an eventfd rung by each put once arm_doorbell() was called anywhere.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ring_init,
    .tp_dealloc = (destructor)ring_dealloc,
    .tp_weaklistoffset = offsetof(RingObject, weakreflist),
    .tp_methods = ring_methods,
};

static PyObject *
set_exceptions(PyObject *module, PyObject *args)
{
    PyObject *full, *empty;
    if (!PyArg_ParseTuple(args, "OO", &full, &empty)) {
        return NULL;
    }
    Py_INCREF(full);
    Py_INCREF(empty);
    Py_XSETREF(FullError, full);
    Py_XSETREF(EmptyError, empty);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"set_exceptions", set_exceptions, METH_VARARGS,
     "set_exceptions(Full, Empty): the exceptions raised by put and get."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef ring_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "polyproc._os._ring",
    .m_doc = "A shared-memory message ring for queues (see the C source's header comment).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__ring(void)
{
    if (PyType_Ready(&RingType) < 0) {
        return NULL;
    }
    FullError = Py_NewRef(PyExc_OverflowError);
    EmptyError = Py_NewRef(PyExc_LookupError);
    PyObject *m = PyModule_Create(&ring_module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&RingType);
    if (PyModule_AddObject(m, "Ring", (PyObject *)&RingType) < 0 ||
        PyModule_AddIntConstant(m, "HEADER_SIZE", HEADER_SIZE) < 0) {
        Py_DECREF(&RingType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
