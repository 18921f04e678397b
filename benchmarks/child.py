"""The child process of ``benchmarks/run.py``: ``python benchmarks/child.py`` serves one peer (see peers.py).

This file is the child's ``__main__`` module, and it is kept tiny on purpose. A pool that starts its
workers with ``spawn`` (``ProcessPoolExecutor`` spawn, loky, dask's ``LocalCluster``) re-runs the main
module of its parent in every worker it starts: that must cost each worker what a small user script
costs, not the import of the whole benchmark. So the benchmark is imported only when this runs as
``__main__``.
"""

if __name__ == "__main__":
    from peers import main  # a sibling module: benchmarks/ is on sys.path, as the folder of this script

    main()
