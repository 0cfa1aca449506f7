"""Ring 2 front end: the ``napari-tiled-unet`` command line, one module per subcommand."""
