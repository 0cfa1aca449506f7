"""Ring 1, the core: arrays in, arrays out (numpy, scipy, tifffile; Keras imported lazily).

No folders of files, no Dask, no Qt: the batch ring and the widgets build on this.
"""
