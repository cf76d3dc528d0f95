/* Kill this process a grace period after its parent dies, without a thread.
 *
 * arm(grace) asks the kernel for a parent-death signal (prctl PR_SET_PDEATHSIG) and
 * catches it with a C handler that starts a POSIX timer, created in advance, whose
 * expiry sends SIGKILL. During the grace period the orphan can still notice its
 * parent's death itself (parent_process().join() returns, a pipe reaches EOF) and finish;
 * after it, it is gone whatever it was doing, so no child outlives its parent for long.
 *
 * The parent-death signal fires when the *thread* that created this process ends, so
 * the caller arms it only for children created by their parent's main thread (the
 * Python layer checks); other children watch their parent from a thread.
 *
 * The signal is a real-time one (SIGRTMIN + 5) that Python and its libraries leave alone;
 * the handler only calls timer_settime, which is async-signal-safe.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

static timer_t kill_timer;
static int timer_ready = 0;
static struct itimerspec grace_spec;

static void
on_parent_death(int signo)
{
    (void)signo;
    int saved = errno;
    timer_settime(kill_timer, 0, &grace_spec, NULL);
    errno = saved;
}

static PyObject *
lifeline_arm(PyObject *module, PyObject *arg)
{
    double grace = PyFloat_AsDouble(arg);
    if (grace == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (grace < 0.001) {
        grace = 0.001;
    }
    int signo = SIGRTMIN + 5;
    if (!timer_ready) {
        struct sigevent ev;
        memset(&ev, 0, sizeof ev);
        ev.sigev_notify = SIGEV_SIGNAL;
        ev.sigev_signo = SIGKILL;
        if (timer_create(CLOCK_MONOTONIC, &ev, &kill_timer) != 0) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        timer_ready = 1;
    }
    grace_spec.it_value.tv_sec = (time_t)grace;
    grace_spec.it_value.tv_nsec = (long)((grace - (double)(time_t)grace) * 1e9);
    grace_spec.it_interval.tv_sec = 0;
    grace_spec.it_interval.tv_nsec = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_parent_death;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(signo, &sa, NULL) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (prctl(PR_SET_PDEATHSIG, signo, 0, 0, 0) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyObject *
lifeline_start_grace(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    /* The parent was already gone when arm() ran: start the grace period now. */
    if (!timer_ready) {
        PyErr_SetString(PyExc_RuntimeError, "arm() first");
        return NULL;
    }
    if (timer_settime(kill_timer, 0, &grace_spec, NULL) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyObject *
lifeline_disarm(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    /* After fork: the child of an armed process has no timer and no parent-death
     * signal of its own until it arms them (prctl's setting is not inherited). */
    timer_ready = 0;
    Py_RETURN_NONE;
}

static PyMethodDef lifeline_methods[] = {
    {"arm", lifeline_arm, METH_O,
     "arm(grace): SIGKILL this process *grace* seconds after its parent thread dies."},
    {"start_grace", lifeline_start_grace, METH_NOARGS,
     "start the grace period now (the parent died before arm)."},
    {"disarm_after_fork", lifeline_disarm, METH_NOARGS, "forget the timer in a forked child"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef lifeline_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "polyproc._os._lifeline",
    .m_doc = "Parent-death signal with a grace period (see the C source's header comment).",
    .m_size = -1,
    .m_methods = lifeline_methods,
};

PyMODINIT_FUNC
PyInit__lifeline(void)
{
    return PyModule_Create(&lifeline_module);
}
