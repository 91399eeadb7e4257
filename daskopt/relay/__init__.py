"""The trial channel relayed through the Dask scheduler, for layouts where workers cannot reach the client.

``scheduler_plugin`` runs inside the scheduler (shipped by value: the scheduler needs no daskopt),
``loop_end`` is the engine loop's side in the client, ``trial_end`` the trial task's side on a worker.
"""
