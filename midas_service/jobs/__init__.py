"""Long work as jobs on RQ: videos and zips of photos, run by ``python -m midas_service worker``.

Inputs and outputs live in a job folder on a shared directory (store.py); Redis holds only the
queue, the status and the progress (queue.py). The worker (worker.py) runs tasks.py.
"""
