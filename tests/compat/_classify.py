"""Which CPython tests use only the documented multiprocessing API, and which area each covers.

This module *is* the definition of polyproc's compatibility figure: the figure counts only the
tests classified **public** here. Everything that decides it is in the tables below, each entry
with the reason it is there:

* :data:`DOCUMENTED` -- the documented names, per module or object ("namespace");
* :data:`DOCUMENTED_UNDERSCORE` -- the few documented names that start with ``_``;
* :data:`MIXIN_ATTRIBUTES` -- what ``self.Queue`` & co. mean for each kind of generated class;
* :data:`SUITE_INFRASTRUCTURE` and :data:`NOT_FOLLOWED` -- suite code that is not looked at;
* :data:`INDIRECT_SELF_CALLS` -- test-case methods that suite helpers call on the test's behalf;
* :data:`AREA_PATTERNS` and :data:`TYPE_AREAS` -- which area a class counts towards.

How a test is classified (statically, from the AST of the installed suite; nothing is imported):

1. Collect the source the test runs: the test method; the ``setUp``/``tearDown``/
   ``setUpClass``/``tearDownClass`` of its class and of the class's bases in the suite; every
   method reached through ``self.NAME``/``cls.NAME``/``ClassName.NAME``; every module-level
   function or class of the suite that it names, with the module-level calls made on such a
   class (``MyManager.register(...)``); Python code inside string literals (child scripts).
   All of this transitively.
2. Turn every attribute chain, import and dotted-path string into a reference rooted at
   ``multiprocessing`` (``util.Finalize`` -> ``multiprocessing.util.Finalize``;
   ``self.Queue`` in a manager class -> ``multiprocessing.Manager().Queue``).
3. The test is *private* if a reference names something outside :data:`DOCUMENTED`, or if any
   attribute chain reaches a name starting with ``_`` that the suite does not define itself and
   that is not in :data:`DOCUMENTED_UNDERSCORE` (``p._popen``, ``process._dangling``), or if it
   uses the C module ``_multiprocessing``. Underscore attributes of other stdlib modules
   (``sys._getframe``, ``threading._dangling``) do not count.

The classification is deliberately conservative in one direction only: a test marked public
really uses nothing else we could see; dynamic lookups (``getattr(obj, name)`` with a variable)
are invisible to it.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = [
    "AREAS",
    "DOCUMENTED",
    "Classification",
    "Classifier",
    "area_of",
    "type_of",
]

# ---------------------------------------------------------------------------------------------
# The rule tables
# ---------------------------------------------------------------------------------------------

_CONTEXT_API = frozenset({
    # "Process and exceptions", "Pipes and Queues", "Miscellaneous", "Synchronization
    # primitives", "Shared ctypes Objects", "Managers", "Process Pools", "Logging" sections of
    # the multiprocessing docs: the module-level API, which context objects repeat.
    "Process", "ProcessError", "BufferTooShort", "AuthenticationError", "TimeoutError",
    "Pipe", "Queue", "SimpleQueue", "JoinableQueue",
    "active_children", "cpu_count", "current_process", "parent_process", "freeze_support",
    "get_all_start_methods", "get_context", "get_start_method", "set_executable",
    "set_start_method", "set_forkserver_preload",
    "Barrier", "BoundedSemaphore", "Condition", "Event", "Lock", "RLock", "Semaphore",
    "Value", "Array", "RawValue", "RawArray",
    "Manager", "Pool", "get_logger", "log_to_stderr",
})

_BASE_MANAGER_API = frozenset({
    # BaseManager methods and attribute ("Managers" section).
    "start", "get_server", "connect", "shutdown", "register", "address", "join",
})

DOCUMENTED: dict[str, frozenset[str]] = {
    # The package itself: the context API plus its documented submodules.
    "multiprocessing": _CONTEXT_API | {
        "connection", "pool", "managers", "sharedctypes", "shared_memory", "dummy",
        # Not documented as modules, but see the entries below: only the names that are the
        # documented objects themselves are allowed through them.
        "process", "queues",
    },
    # A context object "has the same attributes as the multiprocessing module".
    "multiprocessing.get_context()": _CONTEXT_API,
    # "Connection Objects" and "Listeners and Clients".
    "multiprocessing.connection": frozenset({
        "Connection", "Client", "Listener", "wait", "deliver_challenge", "answer_challenge",
    }),
    # "Process Pools".
    "multiprocessing.pool": frozenset({"Pool", "ThreadPool", "AsyncResult"}),
    # "Managers", "Proxy Objects"; SharedMemoryManager is documented with shared_memory.
    # RemoteError is the exception BaseProxy._callmethod is documented to raise.
    "multiprocessing.managers": frozenset({
        "BaseManager", "SyncManager", "BaseProxy", "Namespace", "SharedMemoryManager",
        "RemoteError",
    }),
    # What a SyncManager (multiprocessing.Manager()) is documented to create. Its Pool and
    # JoinableQueue exist but are not documented.
    "multiprocessing.Manager()": _BASE_MANAGER_API | {
        "Barrier", "BoundedSemaphore", "Condition", "Event", "Lock", "Namespace", "Queue",
        "RLock", "Semaphore", "Array", "Value", "dict", "list",
    },
    # SharedMemoryManager methods (shared_memory docs).
    "multiprocessing.managers.SharedMemoryManager()": _BASE_MANAGER_API | {
        "SharedMemory", "ShareableList",
    },
    # "The multiprocessing.sharedctypes module".
    "multiprocessing.sharedctypes": frozenset({
        "RawArray", "RawValue", "Array", "Value", "copy", "synchronized",
    }),
    # The multiprocessing.shared_memory page.
    "multiprocessing.shared_memory": frozenset({"SharedMemory", "ShareableList"}),
    # "multiprocessing.dummy replicates the API of multiprocessing" with threads.
    "multiprocessing.dummy": _CONTEXT_API | {"connection"},
    "multiprocessing.dummy.connection": frozenset({"Client", "Listener", "Pipe"}),
    # The documented functions, reached through the module that defines them
    # (``from multiprocessing.process import parent_process`` is the documented function).
    "multiprocessing.process": frozenset({"current_process", "parent_process",
                                          "active_children"}),
    # The classes that multiprocessing.Queue() & co. return; the docs describe them as the
    # classes multiprocessing.Queue, SimpleQueue and JoinableQueue.
    "multiprocessing.queues": frozenset({"Queue", "SimpleQueue", "JoinableQueue"}),
}

#: Namespaces that are the same as another one.
_NAMESPACE_ALIASES: dict[str, str] = {
    # multiprocessing.Manager() returns a started SyncManager.
    "multiprocessing.managers.SyncManager()": "multiprocessing.Manager()",
    "multiprocessing.get_context().Manager()": "multiprocessing.Manager()",
}

DOCUMENTED_UNDERSCORE: dict[str, str] = {
    # Underscore names that the docs define ("Proxy Objects", BaseManager.register).
    "_callmethod": "BaseProxy._callmethod() is documented",
    "_getvalue": "BaseProxy._getvalue() is documented",
    "_exposed_": "a proxy type's _exposed_ is documented (BaseManager.register)",
    "_method_to_typeid_": "a proxy type's _method_to_typeid_ is documented (BaseManager.register)",
}

MIXIN_ATTRIBUTES: dict[str, tuple[str, frozenset[str]]] = {
    # install_tests_in_module_dict() mixes each _TestX class with ProcessesMixin, ThreadsMixin or
    # ManagerMixin; a test then reaches the API through self.NAME. These say what NAME is.
    "processes": ("multiprocessing", frozenset({
        "Process", "connection", "current_process", "parent_process", "active_children",
        "set_executable", "Pool", "Pipe", "Queue", "JoinableQueue", "Lock", "RLock",
        "Semaphore", "BoundedSemaphore", "Condition", "Event", "Barrier", "Value", "Array",
        "RawValue", "RawArray"})),
    "threads": ("multiprocessing.dummy", frozenset({
        "Process", "connection", "current_process", "active_children", "Pool", "Pipe",
        "Queue", "JoinableQueue", "Lock", "RLock", "Semaphore", "BoundedSemaphore",
        "Condition", "Event", "Barrier", "Value", "Array"})),
    # ManagerMixin: everything but Process comes from the class's Manager(), including Pool,
    # which is how "Manager().Pool" shows up.
    "manager": ("multiprocessing.Manager()", frozenset({
        "Queue", "JoinableQueue", "Lock", "RLock", "Semaphore", "BoundedSemaphore",
        "Condition", "Event", "Barrier", "Value", "Array", "list", "dict", "Namespace",
        "Pool"})),
}

#: Attribute names that always hold a manager in the suite (ManagerMixin.manager,
#: TestSyncManagerTypes.manager), so ``self.manager.X`` is ``multiprocessing.Manager().X``.
_MANAGER_ATTRIBUTES = frozenset({"manager"})

SUITE_INFRASTRUCTURE: dict[str, str] = {
    # Shared by every generated test and reaching into private names (process._dangling, the
    # manager's _number_of_objects); the harness's stand-ins cover them, so they would make
    # every test private without saying anything about the test.
    "BaseTestCase": "assertion helpers shared by all _TestX classes",
    "BaseMixin": "dangling-process bookkeeping around every class",
    "ProcessesMixin": "maps self.NAME to multiprocessing.NAME (see MIXIN_ATTRIBUTES)",
    "ThreadsMixin": "maps self.NAME to multiprocessing.dummy.NAME",
    "ManagerMixin": "starts and checks the class's Manager()",
}

NOT_FOLLOWED: dict[str, str] = {
    # Suite helpers whose private references do not make a test private.
    "close_queue": "checks isinstance(q, multiprocessing.queues.Queue) only to decide whether "
                   "to call the documented close() and join_thread()",
    "get_value": "tries the public get_value() and then the stdlib's private counters; "
                 "assertReturnsIfImplemented accepts their absence",
}

INDIRECT_SELF_CALLS: dict[str, tuple[str, ...]] = {
    # Suite classes that receive the test case and call its methods: Bunch(namespace=self, ...)
    # calls namespace.DummyList(), which for the processes type builds a multiprocessing.heap
    # buffer. Following Bunch from a test also follows these methods of the test's class.
    "Bunch": ("DummyList",),
}

# ---------------------------------------------------------------------------------------------
# Areas
# ---------------------------------------------------------------------------------------------

AREAS: tuple[str, ...] = ("Process", "Pool", "Queue", "sync", "sharedctypes", "Manager",
                          "connection", "shared_memory", "dummy", "other")

#: Class name (without ``With<Type>``/leading ``_``) -> area; the first match wins.
AREA_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"Test(Process|SubclassingProcess|CloseFds|StdinBadfiledescriptor|NoForkBomb|Flags)$",
     "Process"),
    (r"TestPool", "Pool"),
    (r"Test(Simple)?Queue$", "Queue"),
    (r"Test(Lock|Semaphore|Condition|Event|Barrier)$|SemLockTests$", "sync"),
    (r"Test(Value|Array|SharedCTypes|Heap)$", "sharedctypes"),
    (r"Test(Manager\w*|MyManager|RemoteManager|Containers|SyncManagerTypes|Initializers)$",
     "Manager"),
    (r"Test(Connection|Listener\w*|PicklingConnections|Poll\w*|Wait|InvalidFamily|"
     r"InvalidHandle|Timeouts|IgnoreEINTR)$|OtherTest$", "connection"),
    (r"TestSharedMemory", "shared_memory"),
)

TYPE_AREAS: dict[str, str] = {
    # A _TestX class mixed with ManagerMixin exercises manager proxies, whatever X is; one mixed
    # with ThreadsMixin exercises multiprocessing.dummy.
    "manager": "Manager",
    "threads": "dummy",
}

_TYPE_PREFIXES = {"WithProcesses": "processes", "WithThreads": "threads", "WithManager": "manager"}


def type_of(class_name: str) -> str | None:
    """Return the mixin type (processes/threads/manager) of a generated class, else None."""
    for prefix, type_ in _TYPE_PREFIXES.items():
        if class_name.startswith(prefix):
            return type_
    return None


def _base_name(class_name: str) -> str:
    for prefix in _TYPE_PREFIXES:
        if class_name.startswith(prefix):
            return class_name[len(prefix):]
    return class_name.lstrip("_")


def area_of(class_name: str) -> str:
    """Return the area (one of :data:`AREAS`) that test class *class_name* counts towards."""
    type_ = type_of(class_name)
    if type_ in TYPE_AREAS:
        return TYPE_AREAS[type_]
    base = _base_name(class_name)
    for pattern, area in AREA_PATTERNS:
        if re.search(pattern, base):
            return area
    return "other"


# ---------------------------------------------------------------------------------------------
# The classifier
# ---------------------------------------------------------------------------------------------

_PACKAGE = "multiprocessing"
_C_MODULE = "_multiprocessing"
#: Prefix of references to an underscore attribute of some object (``p._popen``).
_OBJECT_MARK = "<obj>"


@dataclass(frozen=True)
class Classification:
    """The verdict for one test: public or not, and the references that made it private."""

    public: bool
    private_refs: tuple[str, ...] = ()
    note: str = ""


@dataclass
class _Scope:
    """Name bindings used to resolve references: aliases to multiprocessing and other modules."""

    aliases: dict[str, str] = field(default_factory=dict)
    foreign: set[str] = field(default_factory=set)

    def copy(self) -> _Scope:
        return _Scope(dict(self.aliases), set(self.foreign))

    def bind_import(self, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
        """Record the names bound by an import; yield the multiprocessing references it makes."""
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                if _is_package_path(alias.name):
                    self.aliases[bound] = alias.name if alias.asname else _PACKAGE
                    self.foreign.discard(bound)
                    yield alias.name
                elif alias.name == _C_MODULE:
                    self.aliases[bound] = _C_MODULE
                else:
                    self.foreign.add(bound)
            return
        module = node.module or ""
        for alias in node.names:
            bound = alias.asname or alias.name
            if _is_package_path(module) and node.level == 0:
                path = f"{module}.{alias.name}"
                self.aliases[bound] = path
                self.foreign.discard(bound)
                yield path
            else:
                self.foreign.add(bound)


def _is_package_path(name: str) -> bool:
    return name == _PACKAGE or name.startswith(_PACKAGE + ".")


def _chain(node: ast.expr) -> list[str] | None:
    """Flatten ``a.b().c`` into ``['a', 'b()', 'c']``; None if it is not rooted at a name."""
    parts: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Call):
            inner = node.func
            if not isinstance(inner, ast.Attribute | ast.Name):
                return None
            parts.append("()")
            node = inner
        elif isinstance(node, ast.Name):
            parts.append(node.id)
            break
        else:
            return None
    parts.reverse()
    merged: list[str] = []
    for part in parts:
        if part == "()" and merged:
            merged[-1] += "()"
        else:
            merged.append(part)
    return merged


def check_reference(ref: str) -> str | None:
    """Return why the dotted reference *ref* (rooted at multiprocessing) is private, or None."""
    parts = ref.split(".")
    if parts[0] == _C_MODULE:
        return f"{_C_MODULE} (CPython's C accelerator, not part of the package)"
    namespace = parts[0]
    rest = parts[1:]
    while rest:
        name = rest[0]
        plain = name.removesuffix("()")
        if plain.startswith("__") and plain.endswith("__"):
            return None
        if plain not in DOCUMENTED[namespace]:
            return f"{namespace}.{plain}"
        child = _NAMESPACE_ALIASES.get(f"{namespace}.{name}", f"{namespace}.{name}")
        rest = rest[1:]
        if child in DOCUMENTED:
            namespace = child
            continue
        break
    for i, name in enumerate(rest):
        plain = name.removesuffix("()")
        if _is_private_name(plain):
            return ".".join(parts[:len(parts) - len(rest) + i + 1])
    return None


def _is_private_name(name: str) -> bool:
    return (name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
            and name not in DOCUMENTED_UNDERSCORE)


class Classifier:
    """Classifies the tests of one suite source text (see the module docstring)."""

    def __init__(self, source: str) -> None:
        """Parse *source*, the text of ``test/_test_multiprocessing.py``."""
        self._tree = ast.parse(source)
        self._classes: dict[str, ast.ClassDef] = {}
        self._functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        self._class_calls: dict[str, list[ast.stmt]] = {}
        self._module_scope = _Scope()
        self._defined: set[str] = set()
        self._index()

    # -- indexing ----------------------------------------------------------------------------

    def _index(self) -> None:
        for stmt in _flatten_module_body(self._tree.body):
            if isinstance(stmt, ast.ClassDef):
                self._classes[stmt.name] = stmt
            elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                self._functions[stmt.name] = stmt
            elif isinstance(stmt, ast.Import | ast.ImportFrom):
                for _ in self._module_scope.bind_import(stmt):
                    pass
            elif isinstance(stmt, ast.Assign) and _imported_module(stmt.value) == _C_MODULE:
                # _multiprocessing = import_helper.import_module('_multiprocessing')
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        self._module_scope.aliases[target.id] = _C_MODULE
            elif isinstance(stmt, ast.Expr):
                chain = _chain(stmt.value)
                if chain and chain[0] in self._classes:
                    self._class_calls.setdefault(chain[0], []).append(stmt)
        # Names the suite defines itself: an underscore attribute spelled like one of these is
        # the suite's own (self._test_x, cls._sleep_some, a _fields_ class attribute).
        for node in ast.walk(self._tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self._defined.add(node.name)
            elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    for sub in ast.walk(target):
                        if isinstance(sub, ast.Name):
                            self._defined.add(sub.id)
                        elif (isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name)
                              and sub.value.id in ("self", "cls")):
                            self._defined.add(sub.attr)

    def _mro(self, class_name: str) -> list[ast.ClassDef]:
        """Static MRO of a suite class: the class, then its suite bases depth-first."""
        seen: list[ast.ClassDef] = []

        def visit(name: str) -> None:
            node = self._classes.get(name)
            if node is None or node in seen:
                return
            seen.append(node)
            for base in node.bases:
                if isinstance(base, ast.Name):
                    visit(base.id)

        visit(class_name)
        return [c for c in seen if c.name not in SUITE_INFRASTRUCTURE]

    def _method(self, mro: Iterable[ast.ClassDef], name: str) -> ast.AST | None:
        for cls in mro:
            for stmt in cls.body:
                if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef) and stmt.name == name:
                    return stmt
                if isinstance(stmt, ast.Assign) and any(
                        isinstance(t, ast.Name) and t.id == name for t in stmt.targets):
                    return stmt
        return None

    # -- collecting the code a test runs -----------------------------------------------------

    def _collect(self, defining_class: str, method: str, runtime_class: str) -> list[ast.AST]:
        type_ = type_of(runtime_class)
        mro = self._mro(defining_class)
        runtime_mro = self._mro(_base_for_runtime(runtime_class)) or mro
        roots: list[ast.AST] = []
        start = self._method(mro, method)
        if start is not None:
            roots.append(start)
        for fixture in ("setUp", "tearDown", "setUpClass", "tearDownClass"):
            node = self._method(runtime_mro, fixture)
            if node is not None:
                roots.append(node)
        collected: list[ast.AST] = []
        seen: set[int] = set()
        todo = list(roots)
        while todo:
            node = todo.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            collected.append(node)
            todo.extend(self._referenced_code(node, runtime_mro, type_))
        return collected

    def _referenced_code(self, node: ast.AST, mro: list[ast.ClassDef],
                         type_: str | None) -> Iterator[ast.AST]:
        class_names = {c.name for c in mro}
        for sub in _walk(node, type_):
            if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name):
                owner = sub.value.id
                if owner in ("self", "cls") or owner in class_names:
                    found = self._method(mro, sub.attr)
                    if found is not None:
                        yield found
                elif owner in self._classes and owner not in SUITE_INFRASTRUCTURE:
                    found = self._method(self._mro(owner), sub.attr)
                    if found is not None:
                        yield found
            elif isinstance(sub, ast.Name) and sub.id not in NOT_FOLLOWED:
                if sub.id in self._functions:
                    yield self._functions[sub.id]
                elif sub.id in self._classes and sub.id not in SUITE_INFRASTRUCTURE:
                    yield self._classes[sub.id]
                    yield from self._class_calls.get(sub.id, [])
                    for name in INDIRECT_SELF_CALLS.get(sub.id, ()):
                        found = self._method(mro, name)
                        if found is not None:
                            yield found

    # -- extracting references ---------------------------------------------------------------

    def _references(self, nodes: Iterable[ast.AST], scope: _Scope,
                    type_: str | None) -> Iterator[str]:
        nodes = list(nodes)
        for node in nodes:  # local imports first, so that aliases resolve everywhere
            for sub in _walk(node, type_):
                if isinstance(sub, ast.Import | ast.ImportFrom):
                    yield from scope.bind_import(sub)
        for node in nodes:
            for sub in _walk(node, type_):
                if isinstance(sub, ast.Attribute) and not isinstance(sub.ctx, ast.Store | ast.Del):
                    yield from self._attribute_refs(sub, scope, type_)
                elif (isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load)
                      and sub.id in scope.aliases):
                    yield scope.aliases[sub.id]
                elif isinstance(sub, ast.ClassDef):
                    yield from self._override_refs(sub, scope, type_)
                elif isinstance(sub, ast.Call):
                    yield from self._getattr_refs(sub, scope, type_)
                elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    yield from self._string_refs(sub.value, type_)

    def _attribute_refs(self, node: ast.Attribute, scope: _Scope,
                        type_: str | None) -> Iterator[str]:
        chain = _chain(node)
        if chain is None:
            if _is_private_name(node.attr) and node.attr not in self._defined:
                yield f"{_OBJECT_MARK}<expr>.{node.attr}"
            return
        resolved = self._resolve(chain, scope, type_)
        if resolved is not None:
            yield resolved
            return
        root = chain[0].removesuffix("()")
        if root in scope.foreign:
            return  # sys._getframe, threading._dangling: not multiprocessing's names
        # self._x / cls._x belong to the test case (or unittest); self.pool._pool does not.
        first = 2 if root in ("self", "cls") else 1
        for i, part in enumerate(chain[first:], start=first + 1):
            plain = part.removesuffix("()")
            if _is_private_name(plain) and plain not in self._defined:
                yield _OBJECT_MARK + ".".join(chain[:i])
                return

    def _resolve(self, chain: list[str], scope: _Scope, type_: str | None) -> str | None:
        """Map an attribute chain to a reference rooted at multiprocessing, if it is one."""
        head = chain[0].removesuffix("()")
        call = "()" if chain[0].endswith("()") else ""
        if head in scope.aliases:
            return scope.aliases[head] + call + "".join("." + p for p in chain[1:])
        if head in ("self", "cls") and len(chain) > 1:
            attr = chain[1].removesuffix("()")
            if attr in _MANAGER_ATTRIBUTES:
                return ".".join(["multiprocessing.Manager()", *chain[2:]])
            if type_ in MIXIN_ATTRIBUTES:
                namespace, names = MIXIN_ATTRIBUTES[type_]
                if attr in names:
                    return ".".join([namespace, *chain[1:]])
        return None

    def _override_refs(self, node: ast.ClassDef, scope: _Scope,
                       type_: str | None) -> Iterator[str]:
        """A subclass of a multiprocessing class overriding an ``_name`` hook uses that hook."""
        bases = [_chain(base) for base in node.bases]
        resolved = [self._resolve(chain, scope, type_) for chain in bases if chain]
        mp_bases = [ref for ref in resolved if ref is not None]
        if not mp_bases:
            return
        for stmt in node.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef) and _is_private_name(
                    stmt.name):
                yield f"{mp_bases[0]}.{stmt.name}"

    def _getattr_refs(self, node: ast.Call, scope: _Scope, type_: str | None) -> Iterator[str]:
        """``getattr(obj, "name")`` with a constant name is ``obj.name``."""
        if not (isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)):
            return
        fake = ast.Attribute(value=node.args[0], attr=node.args[1].value, ctx=ast.Load())
        yield from self._attribute_refs(fake, scope, type_)

    def _string_refs(self, value: str, type_: str | None) -> Iterator[str]:
        """References made by a string: a dotted module path, or a child script."""
        if re.fullmatch(r"multiprocessing(\.[A-Za-z_]\w*)*\.?", value):
            yield value.rstrip(".")
            return
        if not re.search(r"^\s*(import|from)\s+multiprocessing\b", value, re.MULTILINE):
            return
        try:
            tree = ast.parse(textwrap.dedent(value))
        except SyntaxError:
            return
        yield from self._references([tree], _Scope(), type_)

    # -- public entry point ------------------------------------------------------------------

    def classify(self, runtime_class: str, qualname: str) -> Classification:
        """Classify test *qualname* (``DefiningClass.test_x``) as run in *runtime_class*.

        Args:
            runtime_class: the class the test runs in (``WithManagerTestPool``), which decides
                what ``self.Pool`` means.
            qualname: ``__qualname__`` of the test function (``_TestPool.test_apply``).
        """
        defining_class, _, method = qualname.rpartition(".")
        if not defining_class or "<" in qualname:
            return Classification(public=True, note=f"source of {qualname} not found")
        nodes = self._collect(defining_class, method, runtime_class)
        if not nodes:
            return Classification(public=True, note=f"source of {qualname} not found")
        type_ = type_of(runtime_class)
        private: list[str] = []
        for ref in self._references(nodes, self._module_scope.copy(), type_):
            if ref.startswith(_OBJECT_MARK):
                why: str | None = "attribute " + ref[len(_OBJECT_MARK):]
            else:
                why = check_reference(ref)
            if why is not None and why not in private:
                private.append(why)
        return Classification(public=not private, private_refs=tuple(sorted(private)))


def _imported_module(node: ast.expr) -> str | None:
    """The module name of ``import_helper.import_module('name')``, else None."""
    if (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)):
        chain = _chain(node.func)
        if chain and chain[-1] == "import_module":
            return node.args[0].value
    return None


def _base_for_runtime(runtime_class: str) -> str:
    """``WithProcessesTestPool`` -> ``_TestPool``; other names are returned unchanged."""
    for prefix in _TYPE_PREFIXES:
        if runtime_class.startswith(prefix):
            return "_" + runtime_class[len(prefix):]
    return runtime_class


def _type_test(test: ast.expr, type_: str) -> bool | None:
    """Evaluate ``self.TYPE == 'processes'`` (or !=, in, not in) for *type_*; None if unknown."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.left, ast.Attribute) and test.left.attr == "TYPE"
            and isinstance(test.left.value, ast.Name) and test.left.value.id in ("self", "cls")):
        return None
    right = test.comparators[0]
    if isinstance(right, ast.Constant):
        values = {right.value}
    elif isinstance(right, ast.Tuple | ast.List | ast.Set) and all(
            isinstance(e, ast.Constant) for e in right.elts):
        values = {e.value for e in right.elts if isinstance(e, ast.Constant)}
    else:
        return None
    op = test.ops[0]
    if isinstance(op, ast.Eq | ast.In):
        return type_ in values
    if isinstance(op, ast.NotEq | ast.NotIn):
        return type_ not in values
    return None


def _walk(node: ast.AST, type_: str | None) -> Iterator[ast.AST]:
    """Like :func:`ast.walk`, skipping the branch of ``if self.TYPE == ...`` not taken by *type_*.

    ``_TestBarrier.DummyList`` only builds a ``multiprocessing.heap`` buffer for the
    processes type, for instance; the threads and manager variants never touch it.
    """
    todo: list[ast.AST] = [node]
    while todo:
        current = todo.pop()
        yield current
        if isinstance(current, ast.If) and type_ is not None:
            taken = _type_test(current.test, type_)
            if taken is not None:
                todo.extend(reversed(current.body if taken else current.orelse))
                continue
        todo.extend(reversed(list(ast.iter_child_nodes(current))))


def _flatten_module_body(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Module-level statements, including those inside top-level ``if``/``try`` blocks."""
    for stmt in body:
        if isinstance(stmt, ast.If):
            yield from _flatten_module_body(stmt.body)
            yield from _flatten_module_body(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            yield from _flatten_module_body(stmt.body)
            for handler in stmt.handlers:
                yield from _flatten_module_body(handler.body)
            yield from _flatten_module_body(stmt.orelse)
        else:
            yield stmt
