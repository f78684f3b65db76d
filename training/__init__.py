"""The training role: keeps the served model fresh from the store, checks each new version before users
see it, and can go back. `python -m training run | status | promote V | rollback | provenance`.

It may import embeddings, evaluation, inference's pure parts (config, ranking, sources) and db_utils;
nothing imports it, and the service never does.
"""
