"""Ring 2: files, stacks, Dask, zarr, run records and the models folder (no Qt)."""
