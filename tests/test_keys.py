"""Journal keys: equal content gives equal keys in any process; any change of code or argument, another key."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import fractions
import functools
import json
import math
import os
import pathlib
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any

import helpers
import pytest

import jobsched
from jobsched import remote_call
from jobsched._keys import derive as _keys
from jobsched._keys.derive import UnkeyableError, derive_key, normalize_key
from jobsched.remote_call import RemoteCall

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")


class Colour(enum.Enum):
    RED = 1
    BLUE = 2


@dataclasses.dataclass
class Point:
    x: int
    y: list[int]


class Plain:
    def __init__(self, a: int) -> None:
        self.a = a


def key(value: Any) -> str:
    return derive_key(value)


VALUES = [
    None, True, False, 0, 1, -1, 2**300, -(2**300), 0.0, -0.0, 1.5, math.inf, -math.inf, 3 + 4j, "", "a", b"a",
    (), (1, 2), [1, 2], {}, {"a": 1}, {1, 2}, frozenset({1, 2}), range(3), Colour.RED, Colour.BLUE,
    Point(1, [2]), Plain(1), datetime.datetime(2020, 1, 2, 3, 4, 5), datetime.date(2020, 1, 2),
    datetime.timedelta(seconds=3), decimal.Decimal("1.10"), fractions.Fraction(1, 3), uuid.UUID(int=7),
    pathlib.PurePosixPath("/a/b"), collections.Counter("aab"), collections.OrderedDict(a=1),
    functools.partial(helpers.add, 1), helpers.add, helpers.identity, len, Point, Colour,
]


def test_distinct_values_get_distinct_keys() -> None:
    keys = [key(v) for v in VALUES]
    assert len(set(keys)) == len(keys)
    assert all(len(k) == 64 and int(k, 16) >= 0 for k in keys)


@pytest.mark.parametrize(("a", "b"), [
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
    ({"x", "y", "z"}, {"z", "y", "x"}),
    (float("nan"), -float("nan")),
    (Point(1, [2]), Point(1, [2])),
    (collections.Counter("ab"), collections.Counter("ba")),
    (collections.defaultdict(list, a=[1], b=[2]), collections.defaultdict(list, b=[2], a=[1])),
])
def test_equal_content_gets_equal_keys(a: Any, b: Any) -> None:
    assert key(a) == key(b)


@pytest.mark.parametrize(("a", "b"), [
    (1, 1.0), (1, True), (0.0, -0.0), ((1, 2), [1, 2]), ("1", 1), (b"a", "a"), ({1: 2}, {2: 1}),
    (collections.OrderedDict(a=1, b=2), collections.OrderedDict(b=2, a=1)), (Point(1, [2]), Point(1, [3])),
])
def test_different_content_or_type_gets_different_keys(a: Any, b: Any) -> None:
    assert key(a) != key(b)


def test_numpy_arrays_by_dtype_shape_and_bytes() -> None:
    np = pytest.importorskip("numpy")
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    assert key(a) == key(a.copy()) == key(np.asfortranarray(a))
    assert key(a) != key(a.reshape(3, 2)) != key(a.astype(np.int32))
    assert key(np.float64(1.5)) != key(1.5)
    assert key(np.array(["x", None], dtype=object)) == key(np.array(["x", None], dtype=object))


def test_a_remote_call_is_keyed_by_function_and_arguments() -> None:
    base = key(remote_call(helpers.add, 1, y=2))
    assert base == key(remote_call(helpers.add, 1, y=2))
    assert base != key(remote_call(helpers.add, 1, y=3))
    assert base != key(remote_call(helpers.add, 1, 2))  # positional and keyword are different calls
    assert base != key(remote_call(helpers.identity, 1, y=2))
    assert base != key(1)  # data and calls never share keys


def test_kwargs_order_does_not_count() -> None:
    assert key(remote_call(helpers.add, x=1, y=2)) == key(remote_call(helpers.add, y=2, x=1))


def test_closures_and_defaults_are_part_of_a_function_key() -> None:
    def make(n: int) -> Any:
        def f(x: int) -> int:
            return x + n
        return f

    assert key(make(1)) == key(make(1))
    assert key(make(1)) != key(make(2))

    def g(x: int = 1) -> int:
        return x

    def h(x: int = 2) -> int:
        return x

    h.__qualname__ = g.__qualname__
    assert key(g) != key(h)


class ById:
    """Pickles as its own id(): a different key in every process, so it must be refused."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_by_id, (id(self),))


def _by_id(n: int) -> None:
    return None


@pytest.mark.parametrize(("value", "says"), [
    (threading.Lock(), "cannot be pickled"),
    ((x for x in range(3)), "generator"),
    (sys, "module"),
    (ById(), "id()"),
])
def test_unkeyable_values_are_refused_and_named(value: Any, says: str) -> None:
    rc = RemoteCall("add", (1, {"cfg": [value]}), {}, "helpers", helpers.add)
    with pytest.raises(UnkeyableError) as info:
        derive_key(rc)
    message = str(info.value)
    assert "remote_call(add) -> argument 1 -> ['cfg'] -> [0]" in message
    assert says in message and "key=" in message
    assert isinstance(info.value, TypeError) and isinstance(info.value, jobsched.JobschedError)


def test_keyword_arguments_are_named_in_the_error() -> None:
    rc = RemoteCall("add", (), {"y": threading.Lock()}, "helpers", helpers.add)
    with pytest.raises(UnkeyableError, match="keyword argument 'y'"):
        derive_key(rc)


def test_cycles_are_refused() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(UnkeyableError, match="cycle"):
        derive_key(loop)
    shared = [1]
    assert key([shared, shared]) == key([[1], [1]])  # sharing is not a cycle


def test_explicit_keys_are_normalised() -> None:
    assert normalize_key("run-1") == "run-1"
    assert normalize_key(7) == "7"
    assert normalize_key(("fit", 3, ("a", 1))) == '["fit",3,["a",1]]'
    for bad in (1.5, True, ["a"], ("a", 1.0), "", None):
        with pytest.raises(TypeError, match="key= must"):
            normalize_key(bad)


# ---- stability across processes, and sensitivity to code edits

SCRIPT_V1 = '''
def helper(x):
    return x * 2

SCALE = 3

def work(x, y=1):
    """Compute."""
    return helper(x) + y * SCALE
'''

SCRIPT_PRINT_KEYS = '''
import dataclasses, functools, json, sys
sys.path[:0] = {paths!r}
import helpers
from jobsched import remote_call
from jobsched._keys.derive import derive_key
{body}

@dataclasses.dataclass
class Cfg:
    names: frozenset
    table: dict

def local(x):
    return helpers.add(x)

class Model:
    def __init__(self, k):
        self.k = k
    def predict(self, x):
        return x * self.k
    @classmethod
    def make(cls, k):
        return cls(k)
    def __call__(self, x):
        return x + self.k

@functools.lru_cache
def memo(x):
    return x

keys = {{
    "set": derive_key({{"alpha", "beta", "gamma", "delta", "epsilon"}}),
    "dict": derive_key({{"b": {{"x", "y"}}, "a": [1, 2.5, None]}}),
    "dataclass": derive_key(Cfg(frozenset({{"p", "q", "r"}}), {{"k": {{"s", "t"}}}})),
    "module function": derive_key(remote_call(helpers.add, {{"u", "v"}}, y=2)),
    "script function": derive_key(remote_call(local, 1)),
    "lambda": derive_key(remote_call(lambda v: v + 1, 1)),
    "work": derive_key(remote_call(work, 2, y=3)) if "work" in globals() else None,
    "partial": derive_key(remote_call(functools.partial(helpers.add, 1), y=2)),
    "partial, keywords": derive_key(remote_call(functools.partial(helpers.add, y={{"u", "v"}}), 1)),
    "partial of a script function": derive_key(remote_call(functools.partial(local), 1)),
    "partial of a lambda": derive_key(remote_call(functools.partial(lambda a, b: a + b, 1), 2)),
    "partial of a partial's method": derive_key(remote_call(functools.partial(Model(2).predict), 1)),
    "bound method": derive_key(remote_call(Model(3).predict, 1)),
    "classmethod": derive_key(remote_call(Model.make, 1)),
    "callable object": derive_key(remote_call(Model(3), 1)),
    "lru_cache": derive_key(remote_call(memo, 1)),
}}
print(json.dumps(keys))
'''


def keys_in_a_fresh_process(tmp_path: Path, seed: str, body: str = "", name: str = "keys.py") -> dict[str, Any]:
    script = tmp_path / name
    script.write_text(SCRIPT_PRINT_KEYS.format(paths=[ROOT, TESTS], body=body))
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_keys_are_the_same_in_fresh_processes_with_other_hash_seeds(tmp_path: Path) -> None:
    first = keys_in_a_fresh_process(tmp_path, "1", SCRIPT_V1)
    second = keys_in_a_fresh_process(tmp_path, "987654", SCRIPT_V1)
    assert first == second
    assert len(set(first.values())) == len(first)


@pytest.mark.parametrize(("edit", "changes"), [
    (lambda s: s.replace("return helper(x) + y * SCALE", "return helper(x) - y * SCALE"), True),
    (lambda s: s.replace("return x * 2", "return x * 3"), True),  # a same-module function it calls
    (lambda s: s.replace("SCALE = 3", "SCALE = 4"), True),  # a module-level constant it reads
    (lambda s: s.replace('"""Compute."""', '"""Compute it."""'), True),
    (lambda s: s.replace("def work(x, y=1):", "def work(x, y=2):"), True),
    (lambda s: "\n\n# a comment\n\n" + s, False),  # moved down, comments: the same code
])
def test_editing_the_function_or_what_it_calls_changes_the_key(tmp_path: Path, edit: Any, changes: bool) -> None:
    # Two versions of a module file, each imported in its own process: the key follows the code.
    v1 = keys_in_a_fresh_process(tmp_path, "5", SCRIPT_V1, "v1.py")
    v2 = keys_in_a_fresh_process(tmp_path, "6", edit(SCRIPT_V1), "v1.py")
    assert (v1["work"] != v2["work"]) is changes
    assert v1["module function"] == v2["module function"]


def test_a_module_edit_changes_the_key_of_an_imported_function(tmp_path: Path) -> None:
    code = "import sys; sys.path.insert(0, {d!r}); import mod, helpers; from jobsched import remote_call; " \
           "from jobsched._keys.derive import derive_key; print(derive_key(remote_call(mod.work, 2, y=3)))"
    keys = []
    for version in (SCRIPT_V1, SCRIPT_V1, SCRIPT_V1.replace("x * 2", "x * 2 + 0")):
        folder = tmp_path / f"v{len(keys)}"
        folder.mkdir()
        (folder / "mod.py").write_text(version)
        out = subprocess.run([sys.executable, "-c", code.format(d=str(folder))], capture_output=True, text=True,
                             timeout=60, env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{TESTS}"})
        assert out.returncode == 0, out.stderr
        keys.append(out.stdout.strip())
    assert keys[0] == keys[1] != keys[2]


def test_a_partial_is_keyed_by_its_function_and_arguments(tmp_path: Path) -> None:
    base = key(remote_call(functools.partial(helpers.add, 1), y=2))
    assert base == key(remote_call(functools.partial(helpers.add, 1), y=2))
    assert base != key(remote_call(functools.partial(helpers.add, 2), y=2)), "another bound argument"
    assert base != key(remote_call(functools.partial(helpers.add, 1, y=2))), "the same call, another split"
    assert base != key(remote_call(functools.partial(helpers.identity, 1), y=2)), "another function"
    assert key(remote_call(functools.partial(helpers.add, y=[1]), 1)) != \
        key(remote_call(functools.partial(helpers.add, y=[2]), 1))
    # its function's code counts, recursively, through a partial of a partial
    f1, f2 = define("def f(a, b):\n    return a + b\n"), define("def f(a, b):\n    return a - b\n")
    assert key(remote_call(functools.partial(functools.partial(f1, 1)), 2)) != \
        key(remote_call(functools.partial(functools.partial(f2, 1)), 2))
    # what cannot be keyed inside it is named, with the hint to pass key=
    with pytest.raises(UnkeyableError, match=r"the function -> the partial's arguments -> \[0\]: .*id\(\).*key="):
        derive_key(remote_call(functools.partial(helpers.add, ById()), 1))


class Scaler:
    def __init__(self, k: Any) -> None:
        self.k = k

    def apply(self, x: int) -> int:
        return x * self.k

    def __call__(self, x: int) -> int:
        return x + self.k


def test_bound_methods_and_callable_objects_are_keyed_by_code_and_state() -> None:
    assert key(remote_call(Scaler(3).apply, 1)) == key(remote_call(Scaler(3).apply, 1))
    assert key(remote_call(Scaler(3).apply, 1)) != key(remote_call(Scaler(4).apply, 1)), "the object's state"
    assert key(remote_call(Scaler(3), 1)) == key(remote_call(Scaler(3), 1))
    assert key(remote_call(Scaler(3), 1)) != key(remote_call(Scaler(4), 1))
    assert key(remote_call(Scaler(3), 1)) != key(remote_call(Scaler(3).apply, 1))
    # the method's code, and the code of a callable object's __call__, count
    source = "class C:\n    k = 1\n    def m(self, x):\n        return x {op} 1\n    __call__ = m\n"
    c1, c2 = define(source.format(op="+"), "C"), define(source.format(op="-"), "C")
    assert key(remote_call(c1().m, 1)) != key(remote_call(c2().m, 1))
    assert key(remote_call(c1(), 1)) != key(remote_call(c2(), 1))
    # an object that cannot be keyed is refused, never keyed by its address
    with pytest.raises(UnkeyableError, match=r"the function -> __self__ -> state -> \['k'\]: .*id\(\).*key="):
        derive_key(remote_call(Scaler(ById()).apply, 1))


def test_a_wrapper_object_is_keyed_by_the_code_it_wraps() -> None:
    f1, f2 = define("def f(x):\n    return x + 1\n"), define("def f(x):\n    return x + 2\n")
    def call(f: Any) -> RemoteCall:  # not remote_call(): a cell's lru_cache cannot be pickled by reference
        return RemoteCall(f.__qualname__, (1,), {}, None, f)

    assert key(call(functools.lru_cache(f1))) == key(call(functools.lru_cache(f1)))
    assert key(call(functools.lru_cache(f1))) != key(call(functools.lru_cache(f2)))


def test_a_by_value_function_is_keyed_by_its_code() -> None:
    assert key(remote_call(lambda v: v + 1, 1)) == key(remote_call(lambda v: v + 1, 1))
    assert key(remote_call(lambda v: v + 1, 1)) != key(remote_call(lambda v: v + 2, 1))


def test_recursive_functions_terminate() -> None:
    def fact(n: int) -> int:
        return 1 if n <= 1 else n * fact(n - 1)

    assert key(fact) == key(fact)
    assert key(remote_call(helpers.add, 1)) == key(remote_call(helpers.add, 1))


def test_derive_key_is_fast_enough_for_20000_jobs() -> None:
    import time

    calls = [remote_call(helpers.add, i, y=2) for i in range(2000)]
    start = time.perf_counter()
    for rc in calls:
        derive_key(rc)
    per_key = (time.perf_counter() - start) / len(calls)
    assert per_key < 200e-6, f"{per_key * 1e6:.1f} µs per key"


def test_error_names_the_value_to_replace_with_key() -> None:
    with pytest.raises(UnkeyableError) as info:
        derive_key({"lock": threading.Lock()})
    assert str(info.value).startswith("add_job -> data -> ['lock']: a _thread.lock cannot be keyed")
    assert textwrap.shorten(str(info.value), 400).endswith("to add_job() or submit()")


# ---- the fast path and the function cache give exactly the keys of the long way

def fresh_key(data: Any) -> str:
    """The key computed the long way, with every cache emptied first."""
    _keys._function_cache.clear()
    _keys._builtin_cache.clear()
    _keys._call_heads.clear()
    return _keys._derive_key(data)


def define(source: str, name: str = "f") -> Any:
    """A function defined in a fresh namespace, as a notebook cell or a reloaded module defines it anew."""
    namespace: dict[str, Any] = {"__name__": "cell"}
    exec(compile(textwrap.dedent(source), "<cell>", "exec"), namespace)
    return namespace[name]


FAST_VALUES = [
    0, -1, 255, 256, -129, 2**63, 2**300, 2**40000, 1.5, -0.0, math.nan, 3 + 4j, "", "é" * 300, "x" * 5000, b"ab",
    b"x" * 5000, None, True, (), [], {}, set(), frozenset(), (1, "a", 2.5), [1, [2, [3, (4, {"a": [5]})]]],
    {"b": 1, "a": 2}, {1: "x", "y": (2, 3)}, {1, 2, "z"}, frozenset({(1, 2)}), list(range(600)),
    {str(i): i for i in range(300)}, [[[[[[[[[[[[1]]]]]]]]]]]], [True, 1, 1.0], [Colour.RED, 1], {"p": Point(1, [2])},
]


@pytest.mark.parametrize("value", FAST_VALUES, ids=range(len(FAST_VALUES)))
def test_the_fast_path_gives_the_keys_of_the_long_way(value: Any) -> None:
    assert derive_key(value) == fresh_key(value)
    call = remote_call(helpers.add, value, y=value)
    first = derive_key(call)  # fills the cache
    assert derive_key(call) == first == fresh_key(call)


@pytest.mark.parametrize("function", [helpers.add, len, str.upper, dict.fromkeys, math.sqrt, functools.partial(max, 1)])
def test_a_cached_function_gives_the_key_of_the_long_way(function: Any) -> None:
    call = remote_call(function, 1, 2)
    assert derive_key(call) == derive_key(call) == fresh_key(call)


def test_a_function_redefined_in_a_fresh_namespace_gets_a_new_key_when_its_code_changes() -> None:
    f1 = define("def f(x):\n    return x + 1\n")
    key1 = derive_key(remote_call(f1, 1))
    assert derive_key(remote_call(f1, 1)) == key1  # the same function: the same key, from the cache
    f2 = define("def f(x):\n    return x + 2\n")  # edited and run again
    assert derive_key(remote_call(f2, 1)) != key1
    assert derive_key(remote_call(define("def f(x):\n    return x + 1\n"), 1)) == key1  # the same code again
    assert derive_key(remote_call(f1, 1)) == key1


def test_changing_what_a_cached_function_reads_changes_its_key() -> None:
    f = define('''
        SCALE = 3
        def helper(x):
            return x * 2
        def f(x, y=1, *, z=2):
            return helper(x) + y * SCALE + z
    ''')
    namespace = f.__globals__
    call = remote_call(f, 1)
    seen = {derive_key(call)}

    def changed() -> None:
        now = derive_key(call)
        assert now == fresh_key(call)
        assert now not in seen
        seen.add(now)
        assert derive_key(call) == now  # cached again

    assert derive_key(call) in seen
    f.__defaults__ = (2,)
    changed()
    f.__kwdefaults__["z"] = 3  # in place: the same dict
    changed()
    namespace["SCALE"] = 4
    changed()
    old_helper = namespace["helper"]  # still alive: only the name is rebound
    namespace["helper"] = define("def helper(x):\n    return x * 3\n", "helper")
    namespace["helper"].__module__ = f.__module__
    changed()
    f.__code__ = define("def f(x, y=1, *, z=2):\n    return x\n").__code__
    changed()
    f.__qualname__ = "g"
    changed()
    assert old_helper is not namespace["helper"]


def test_a_closure_variable_reassigned_changes_the_key() -> None:
    def make() -> tuple[Any, Any]:
        n = 1

        def f(x: int) -> int:
            return x + n

        def bump() -> None:
            nonlocal n
            n += 1
        return f, bump

    f, bump = make()
    call = remote_call(f, 1)
    before = derive_key(call)
    assert derive_key(call) == before
    bump()
    after = derive_key(call)
    assert after != before and after == fresh_key(call)


def test_a_mutable_default_is_never_cached() -> None:
    f = define("def f(x, seen=[]):\n    return x\n")
    call = remote_call(f, 1)
    before = derive_key(call)
    f.__defaults__[0].append(1)
    assert derive_key(call) != before


def test_the_cache_does_not_keep_a_function_alive() -> None:
    import gc
    import weakref

    f = define("import math\nLIMIT = 3\ndef helper(x):\n    return x\n"
               "def f(x):\n    return helper(math.sqrt(x)) + LIMIT\n")
    derive_key(remote_call(f, 1))
    derive_key(remote_call(f, 1))
    assert id(f) in _keys._function_cache
    ref, key_id = weakref.ref(f), id(f)
    del f
    gc.collect()
    assert ref() is None
    assert key_id not in _keys._function_cache
