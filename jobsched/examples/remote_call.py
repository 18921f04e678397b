"""The manual's remote-call example: ``python -m jobsched.examples.remote_call``.

The functions, the worker and the server live in one file here; they could be in three.
"""

from __future__ import annotations

from jobsched import remote_call, start_remote_call_worker, start_simple_server, this_file


def greet(name: str, greeting: str = "Hello") -> str:
    return f"{greeting}, {name}!"


def total(prices: list[float], tax_rate: float = 0) -> float:
    return float(sum(prices) * (1 + tax_rate))


# === Worker === : the worker resolves and calls the functions.
def worker() -> None:
    start_remote_call_worker()


# === Server === : these look like calls, but they are captured and run by the workers.
def main() -> None:
    start_simple_server(
        worker_file=this_file(),
        data_list=[
            remote_call(greet, "Alice"),
            remote_call(greet, "Bob", greeting="Hi"),
            remote_call(total, [10, 20, 30]),
            remote_call(total, [100, 200], tax_rate=0.2),
        ],
        process_result=lambda data, result: print(result),
        n_workers=3,
    )


if __name__ == "__main__":
    main()
