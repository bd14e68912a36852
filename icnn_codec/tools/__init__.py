"""Tools around the codec: the comparison bench against classic codecs, and stream fuzzing."""
