"""Storage: the SQLite plumbing the parties' stores are built on (:mod:`.sqlite`: atomic
creation, the store manifest, the data directory's lock, sealed columns) and the
PostgreSQL back end of the utility's outputs (:mod:`.postgres`). It sits right under the
parties and imports nothing above it (``.importlinter``)."""
