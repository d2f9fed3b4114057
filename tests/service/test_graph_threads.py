"""The graph threads: per-thread set-up (FAISS's OpenMP count is per calling thread) and a warm-up
that reaches every thread once."""

import asyncio
import threading

import faiss

from service.engine.graph_threads import GraphThreads


def test_init_sets_faiss_threads_on_every_graph_thread_and_warm_up_visits_each_once():
    faiss.omp_set_num_threads(1)  # on this thread only, as the service does on its event loop's: a new

    # thread starts from OpenMP's default (the machine's cores) unless the initialiser sets it
    async def scenario():
        graphs = GraphThreads(3, lambda: faiss.omp_set_num_threads(1))
        try:
            visits = await graphs.on_every_thread(
                lambda: (threading.current_thread().name, faiss.omp_get_max_threads())
            )
            later = await asyncio.gather(*(graphs.run(faiss.omp_get_max_threads) for _ in range(12)))
            return visits, later
        finally:
            graphs.close()

    visits, later = asyncio.run(scenario())
    assert len({name for name, _ in visits}) == 3
    assert [n for _, n in visits] == [1, 1, 1] and set(later) == {1}
