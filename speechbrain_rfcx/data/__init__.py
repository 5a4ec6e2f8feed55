"""Data layer: annotations, preparation, synthetic soundscapes, crops, pipelines."""
