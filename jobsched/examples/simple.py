"""The manual's simple server/worker example: ``python -m jobsched.examples.simple``."""

from __future__ import annotations

from jobsched import start_simple_server, start_simple_worker, this_file


# === Worker ===
def worker_run(data: tuple[int, int]) -> int:
    x, y = data
    return x * y


def worker() -> None:
    start_simple_worker(worker_run)


# === Server ===
def process_result(data: tuple[int, int], result: int) -> None:
    print(f"{data[0]} × {data[1]} = {result}")


def main() -> None:
    data_list = [(x, y) for x in range(5) for y in range(5)]
    start_simple_server(worker_file=this_file(), data_list=data_list, process_result=process_result)


if __name__ == "__main__":
    main()
