"""The tests of CPython's ``concurrent.futures`` suite that ``jobsched.Executor`` does not pass, and why.

``tests/test_conformance.py`` skips exactly these (any other test that does not pass fails there), and
``docs/coming-from-processpool.md`` lists the same names with the same reasons (checked by
``tests/test_conformance_differences.py``). Keys are the test's qualified name in the stdlib's
``test.test_concurrent_futures`` package: the class that defines it, then the test.

``DIFFERENCES`` are behaviours jobsched chose on purpose. ``NOT_APPLICABLE`` are tests of
``ProcessPoolExecutor``'s own internals (``_processes``, ``_mp_context``, ``_executor_manager_thread``) or of
``ProcessPoolExecutor`` constructed by name: they say nothing about another executor.
"""

from __future__ import annotations

_WORKER_DIES = ("a worker that dies (crash, exit, segfault) is replaced and its call re-run up to max_retries, "
                "then fails with JobError('WorkerDied'); the executor is not broken (ProcessPoolExecutor raises "
                "BrokenProcessPool on every pending call)")
_OWN_CALL_ONLY = ("a call whose arguments or result cannot be unpickled fails alone, with the error's own type "
                  "(an UnpicklingError that is also a JobError); "
                  "the executor is not broken (ProcessPoolExecutor raises BrokenProcessPool)")
_NO_EXIT = ("a call that raises SystemExit (in its function, or while its arguments or its result are "
            "unpickled) fails alone, with a plain JobError naming it, so that it never looks like the caller's "
            "own exit and `except Exception` catches it (ProcessPoolExecutor raises SystemExit, or "
            "BrokenProcessPool when unpickling)")
_PICKLE_AT_SUBMIT = ("an argument that cannot be pickled is refused by submit() itself, with a TypeError naming "
                     "it (ProcessPoolExecutor raises its PicklingError later, from result())")
_CHILD = ("its child interpreter imports the executor class by name from concurrent.futures, which has no "
          "jobsched.Executor; tests/test_executor_contract.py runs the same scenario with it")
_REPR = ("jobsched's future is JobFuture, a subclass of concurrent.futures.Future (its cancel() also stops a "
         "running call), and its repr, in InvalidStateError's message too, names that class")
_MP_SYNC = ("it passes a multiprocessing Semaphore or Manager proxy to the calls; those travel only to "
            "multiprocessing's own children, and jobsched's workers are independent interpreters")

DIFFERENCES: dict[str, str] = {
    "ExecutorShutdownTest.test_interpreter_shutdown": _CHILD,
    "ExecutorShutdownTest.test_submit_after_interpreter_shutdown": _CHILD,
    "ExecutorShutdownTest.test_hang_gh83386": _CHILD,
    "ExecutorShutdownTest.test_cancel_futures": (
        "a call has started only once a worker holds it: shutdown(cancel_futures=True) right after submitting, "
        "while the workers still start, cancels every call (ProcessPoolExecutor has already moved a few to its "
        "call queue, and runs them)"),
    "ProcessPoolExecutorTest.test_killed_child": _WORKER_DIES,
    "ProcessPoolExecutorTest.test_traceback": (
        "a failed call's exception is an instance of the call's own class and of JobError (a class combining "
        "both, so `type(e) is RuntimeError` is false), its args are JobError's, and its __cause__ is "
        "jobsched.errors.RemoteTraceback; tests/test_executor_contract.py checks the traceback text"),
    "ProcessPoolExecutorTest.test_ressources_gced_in_workers": _MP_SYNC,
    "FutureTests.test_repr": _REPR,
    "FutureTests.test_multiple_set_result": _REPR,
    "FutureTests.test_multiple_set_exception": _REPR,
    "ExecutorDeadlockTest.test_error_at_task_pickle": _PICKLE_AT_SUBMIT,
    "ExecutorDeadlockTest.test_shutdown_deadlock_pickle": _PICKLE_AT_SUBMIT,
    "ExecutorDeadlockTest.test_exit_at_task_unpickle": _NO_EXIT,
    "ExecutorDeadlockTest.test_crash_at_task_unpickle": _WORKER_DIES,
    "ExecutorDeadlockTest.test_crash_during_func_exec_on_worker": _WORKER_DIES,
    "ExecutorDeadlockTest.test_crash_during_result_pickle_on_worker": _WORKER_DIES,
    "ExecutorDeadlockTest.test_shutdown_deadlock": _WORKER_DIES,
    "ExecutorDeadlockTest.test_crash_big_data": _WORKER_DIES,
    "ExecutorDeadlockTest.test_error_at_task_unpickle": _OWN_CALL_ONLY,
    "ExecutorDeadlockTest.test_error_during_result_unpickle_in_result_handler": _OWN_CALL_ONLY,
    "ExecutorDeadlockTest.test_exit_during_result_unpickle_in_result_handler": _NO_EXIT,
    "ExecutorDeadlockTest.test_exit_during_func_exec_on_worker": _NO_EXIT,
    "ExecutorDeadlockTest.test_exit_during_result_pickle_on_worker": _NO_EXIT,
}

_INTERNALS = "it reads ProcessPoolExecutor's internals ({})"
_BY_NAME = "it constructs concurrent.futures.ProcessPoolExecutor by name and reads its internals"

NOT_APPLICABLE: dict[str, str] = {
    "ProcessPoolExecutorTest.test_saturation": _INTERNALS.format("_processes"),
    "ProcessPoolExecutorTest.test_idle_process_reuse_one": _INTERNALS.format("_processes"),
    "ProcessPoolExecutorTest.test_idle_process_reuse_multiple": _INTERNALS.format("_processes"),
    "ProcessPoolExecutorTest.test_max_tasks_per_child": _INTERNALS.format("_processes"),
    "ProcessPoolExecutorTest.test_max_tasks_per_child_defaults_to_spawn_context": _INTERNALS.format("_mp_context"),
    "ProcessPoolExecutorTest.test_python_finalization_error": _INTERNALS.format(
        "the number of threads it starts; tests/test_executor_contract.py fails a thread start with jobsched"),
    "ProcessPoolShutdownTest.test_processes_terminate": _INTERNALS.format("_processes"),
    "ProcessPoolShutdownTest.test_context_manager_shutdown": _BY_NAME,
    "ProcessPoolShutdownTest.test_del_shutdown": _BY_NAME,
    "ProcessPoolShutdownTest.test_shutdown_no_wait": _BY_NAME,
}
