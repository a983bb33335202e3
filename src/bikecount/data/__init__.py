"""Data sets: reading and writing export files, the generator, the download, the temporal split."""
